-- Orders and stock reservations. The order's event stream (events table) is
-- the truth; order_views is its projection (the read model), rebuilt from
-- the events by `tenantd projections rebuild`.

CREATE TABLE reservations (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         uuid NOT NULL,
    order_id   uuid NOT NULL,
    product_id uuid NOT NULL,
    quantity   bigint NOT NULL CHECK (quantity > 0),
    status     text NOT NULL CHECK (status IN ('held', 'committed', 'released')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);
CREATE INDEX reservations_order ON reservations (tenant_id, order_id);
CREATE INDEX reservations_product ON reservations (tenant_id, product_id, id);
ALTER TABLE reservations ENABLE ROW LEVEL SECURITY;
ALTER TABLE reservations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON reservations
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
GRANT SELECT, INSERT, UPDATE, DELETE ON reservations TO tenantd_app;

CREATE TABLE order_views (
    tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                     uuid NOT NULL,
    customer_id            text NOT NULL,
    status                 text NOT NULL CHECK (status IN ('pending', 'completed', 'cancelled')),
    items                  jsonb NOT NULL,
    total                  bigint NOT NULL CHECK (total >= 0),
    currency               text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    cancellation_reason    text,
    payment_id             uuid,
    reservation_expires_at timestamptz NOT NULL,
    version                bigint NOT NULL,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX order_views_status ON order_views (tenant_id, status, id);
CREATE INDEX order_views_pending_expiry ON order_views (reservation_expires_at) WHERE status = 'pending';
ALTER TABLE order_views ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_views FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON order_views
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
-- The owner (and so the SECURITY DEFINER sweeper lookup below) reads all.
CREATE POLICY owner_lookup ON order_views FOR SELECT TO CURRENT_USER USING (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON order_views TO tenantd_app;

-- The one cross-tenant read of the order sweeper: pending orders whose
-- reservations expired, as (tenant, order) pairs and nothing else.
CREATE FUNCTION orders_expired(p_now timestamptz, p_limit int)
RETURNS TABLE (tenant_id uuid, order_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT o.tenant_id, o.id FROM order_views o
    WHERE o.status = 'pending' AND o.reservation_expires_at < p_now
    ORDER BY o.reservation_expires_at
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION orders_expired(timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orders_expired(timestamptz, int) TO tenantd_app;
