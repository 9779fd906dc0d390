-- Confine what the runtime role reaches past row-level security
-- (docs/security.md, "Functions that see past row-level security").
--
-- 1. The SECURITY DEFINER functions. Each runs as the owner, whom no
--    tenant policy stops, so each must check whom it serves. One model for
--    all: a function serves the scope of the transaction that calls it.
--      * A tenant's transaction (app.tenant_id set by db.WithTenant): that
--        tenant's rows only. billing_close_period, which can only act for
--        every tenant at once, refuses.
--      * The platform scope (app.platform = 'on', db.WithPlatform):
--        nothing; billing_close_period refuses.
--      * No scope: the background workers (event dispatcher, audit sealer,
--        order sweeper, payments reconciler, idempotency sweeper, metering,
--        billing exports) and the two credential lookups that run before a
--        tenant is known. Each returns what its one caller needs.
--    A request's queries run in its tenant's transaction, so a request
--    path that calls one of these functions (by mistake, or a feed that
--    reuses the dispatcher's read) gets its own tenant's rows and no
--    other's. The bodies are otherwise those of 0001-0014.
--
-- 2. casbin_rule. It has no tenant_id (the Casbin adapter reads it outside
--    tenant transactions, and the periodic reload reads many tenants'
--    rules at once), so reads stay open; but a rule is written only for
--    the tenant of the transaction: its domain (v1) must be app.tenant_id.
--    auth.RBAC sets the tenant before it writes. Not FORCEd: the owner
--    (migrations, repairs) is not bound.

-- Whether the calling transaction's scope admits a row of p_tenant: the
-- tenant set, or any tenant when neither a tenant nor the platform is set.
-- A plain SQL expression (no SET clause, not SECURITY DEFINER) that
-- PostgreSQL inlines into the calling query, as billing_meter_is_gauge.
CREATE FUNCTION app_scope_admits(p_tenant uuid) RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN nullif(current_setting('app.tenant_id', true), '') IS NOT NULL
            THEN p_tenant = nullif(current_setting('app.tenant_id', true), '')::uuid
        ELSE coalesce(current_setting('app.platform', true), '') <> 'on'
    END
$$;

CREATE OR REPLACE FUNCTION auth_api_key_lookup(p_prefix text)
RETURNS TABLE (key_id uuid, tenant_id uuid, secret_hash bytea, roles text[],
               expires_at timestamptz, revoked_at timestamptz,
               tenant_slug text, tenant_status text, tenant_plan text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT k.id, k.tenant_id, k.secret_hash, k.roles, k.expires_at, k.revoked_at,
           t.slug, t.status, t.plan
    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
    WHERE k.prefix = p_prefix AND app_scope_admits(k.tenant_id)
$$;

CREATE OR REPLACE FUNCTION auth_oidc_tenants(p_issuer text)
RETURNS TABLE (tenant_id uuid, tenant_slug text, tenant_status text, tenant_plan text, oidc jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT t.id, t.slug, t.status, t.plan, t.settings -> 'oidc'
    FROM tenants t
    WHERE t.settings -> 'oidc' ->> 'issuer' = p_issuer AND app_scope_admits(t.id)
    ORDER BY t.id
$$;

CREATE OR REPLACE FUNCTION events_dispatch_batch(p_after bigint, p_upto bigint, p_max int, p_types text[])
RETURNS TABLE (tenant_id uuid, id uuid, stream_id text, version bigint, type text,
               data jsonb, metadata jsonb, "position" bigint, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT e.tenant_id, e.id, e.stream_id, e.version, e.type, e.data, e.metadata, e.position, e.created_at
    FROM events e
    WHERE e.position > p_after AND e.position <= p_upto
      AND (p_types IS NULL OR e.type = ANY (p_types))
      AND app_scope_admits(e.tenant_id)
    ORDER BY e.position
    LIMIT least(greatest(p_max, 0), 1000)
$$;

CREATE OR REPLACE FUNCTION idempotency_sweep()
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    WITH gone AS (
        DELETE FROM idempotency_keys WHERE expires_at <= now() AND app_scope_admits(tenant_id) RETURNING 1
    )
    SELECT count(*) FROM gone
$$;

CREATE OR REPLACE FUNCTION orders_expired(p_now timestamptz, p_limit int)
RETURNS TABLE (tenant_id uuid, order_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT o.tenant_id, o.id FROM order_views o
    WHERE o.status = 'pending' AND o.reservation_expires_at < p_now AND app_scope_admits(o.tenant_id)
    ORDER BY o.reservation_expires_at
    LIMIT p_limit
$$;

CREATE OR REPLACE FUNCTION billing_active_products()
RETURNS TABLE (tenant_id uuid, products bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT p.tenant_id, count(*)::bigint FROM products p
    WHERE app_scope_admits(p.tenant_id)
    GROUP BY p.tenant_id
$$;

CREATE OR REPLACE FUNCTION billing_close_period(p_period text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    v_frozen int;
BEGIN
    IF nullif(current_setting('app.tenant_id', true), '') IS NOT NULL
       OR coalesce(current_setting('app.platform', true), '') = 'on' THEN
        RAISE EXCEPTION 'billing_close_period closes a period for every tenant: not in a tenant''s or the platform''s transaction'
            USING ERRCODE = '42501';
    END IF;
    IF p_period IS NULL OR p_period !~ '^[0-9]{4}-(0[1-9]|1[0-2])$' THEN
        RAISE EXCEPTION 'billing period % is not YYYY-MM', p_period USING ERRCODE = '22023';
    END IF;
    IF statement_timestamp() < ((p_period || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC' THEN
        RETURN 'open';
    END IF;
    IF EXISTS (SELECT 1 FROM billing_periods WHERE period = p_period AND lines_frozen_at IS NOT NULL) THEN
        RETURN 'final';
    END IF;
    LOCK TABLE usage_counters IN SHARE MODE;
    INSERT INTO billing_periods (period) VALUES (p_period) ON CONFLICT (period) DO NOTHING;
    UPDATE billing_periods SET lines_frozen_at = statement_timestamp()
    WHERE period = p_period AND lines_frozen_at IS NULL;
    GET DIAGNOSTICS v_frozen = ROW_COUNT;
    IF v_frozen = 0 THEN
        RETURN 'final'; -- closed concurrently
    END IF;
    INSERT INTO billing_lines (tenant_id, period, meter, meter_currency, usage_period, tenant_slug, plan,
                               quantity, included, billable, unit_price, unit_size, amount, currency, hard_limit)
    SELECT l.tenant_id, p_period, l.meter, l.meter_currency, l.usage_period, l.tenant_slug, l.plan,
           l.quantity, l.included, l.billable, l.unit_price, l.unit_size, l.amount, l.currency, l.hard_limit
    FROM billing_live_lines(p_period) l;
    RETURN 'closed';
END
$$;

CREATE OR REPLACE FUNCTION billing_export_rows(p_period text, p_final boolean)
RETURNS TABLE (tenant_id uuid, meter text, meter_currency text, usage_period text,
               tenant_slug text, plan text, quantity bigint, included bigint, billable bigint,
               unit_price bigint, unit_size bigint, amount bigint, currency text, hard_limit boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT p_final THEN
        RETURN QUERY SELECT * FROM billing_live_lines(p_period) l WHERE app_scope_admits(l.tenant_id);
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM billing_periods WHERE period = p_period AND lines_frozen_at IS NOT NULL) THEN
        RAISE EXCEPTION 'billing period % is not closed', p_period USING ERRCODE = 'P0002';
    END IF;
    RETURN QUERY
        SELECT l.tenant_id, l.meter, l.meter_currency, l.usage_period, l.tenant_slug::text, l.plan,
               l.quantity, l.included, l.billable, l.unit_price, l.unit_size, l.amount, l.currency, l.hard_limit
        FROM billing_lines l WHERE l.period = p_period AND app_scope_admits(l.tenant_id);
END
$$;

CREATE OR REPLACE FUNCTION billing_export_tenants(p_period text, p_final boolean)
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT CASE WHEN p_final THEN
        (SELECT count(DISTINCT l.tenant_id) FROM billing_lines l
         WHERE l.period = p_period AND app_scope_admits(l.tenant_id))
    ELSE
        (SELECT count(*) FROM tenants t
         WHERE (t.created_at < ((p_period || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC'
                OR t.id IN (SELECT u.tenant_id FROM usage_counters u WHERE u.billing_period = p_period))
           AND app_scope_admits(t.id))
    END
$$;

CREATE OR REPLACE FUNCTION billing_usage_page(p_period text, p_after uuid, p_limit int)
RETURNS TABLE (tenant_id uuid, tenant_slug text, plan text, meter text, meter_currency text, used bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    WITH page AS (
        SELECT t.id, t.slug, t.plan FROM tenants t
        WHERE (p_after IS NULL OR t.id > p_after) AND app_scope_admits(t.id)
        ORDER BY t.id
        LIMIT least(greatest(p_limit, 0), 1000)
    )
    SELECT p.id, p.slug, p.plan, u.meter, u.currency, u.used
    FROM page p
    LEFT JOIN LATERAL (
        SELECT c.meter, c.currency,
               (CASE WHEN billing_meter_is_gauge(c.meter) THEN max(c.quantity) ELSE sum(c.quantity) END)::bigint AS used
        FROM usage_counters c
        WHERE c.tenant_id = p.id AND c.billing_period = p_period
        GROUP BY c.meter, c.currency
    ) u ON true
    ORDER BY p.id, u.meter COLLATE "C", u.currency COLLATE "C"
$$;

CREATE OR REPLACE FUNCTION audit_unsealed(p_upto bigint, p_max int, p_skip uuid[])
RETURNS TABLE (tenant_id uuid, "position" bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT a.tenant_id, a.position
    FROM audit_events a
    WHERE a.hash IS NULL AND a.position <= p_upto
      AND a.tenant_id <> ALL (coalesce(p_skip, '{}'))
      AND app_scope_admits(a.tenant_id)
    ORDER BY a.position
    LIMIT least(greatest(p_max, 0), 10000)
$$;

CREATE OR REPLACE FUNCTION payments_unsettled(p_before timestamptz, p_limit int)
RETURNS TABLE (tenant_id uuid, payment_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT p.tenant_id, p.id FROM payments p
    WHERE p.status = 'processing' AND p.created_at < p_before AND app_scope_admits(p.tenant_id)
    ORDER BY p.created_at
    LIMIT p_limit
$$;

CREATE OR REPLACE FUNCTION refunds_due(p_now timestamptz, p_limit int)
RETURNS TABLE (tenant_id uuid, refund_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT r.tenant_id, r.id FROM refunds r
    WHERE r.status = 'pending' AND r.attempt_after <= p_now AND app_scope_admits(r.tenant_id)
    ORDER BY r.attempt_after
    LIMIT p_limit
$$;

-- casbin_rule: reads open (the adapter and the periodic reload read many
-- tenants' rules outside tenant transactions), writes for the
-- transaction's tenant only.
ALTER TABLE casbin_rule ENABLE ROW LEVEL SECURITY;
CREATE POLICY policy_read ON casbin_rule FOR SELECT USING (true);
CREATE POLICY tenant_domain_insert ON casbin_rule FOR INSERT
    WITH CHECK (v1 = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid::text));
CREATE POLICY tenant_domain_update ON casbin_rule FOR UPDATE
    USING (v1 = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid::text))
    WITH CHECK (v1 = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid::text));
CREATE POLICY tenant_domain_delete ON casbin_rule FOR DELETE
    USING (v1 = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid::text));
