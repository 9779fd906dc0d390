-- Signed webhooks (Standard Webhooks). Three tenant tables, each under
-- row-level security like every tenant table:
--   webhook_endpoints   where a tenant wants its events, which types, and
--                       the signing secret(s), sealed (webhooks.Box);
--   webhook_deliveries  one row per (endpoint, event) to send: the exact
--                       body, its state, the next attempt, and the lease of
--                       the worker sending it right now;
--   webhook_attempts    the delivery log: one row per attempt.
-- The delivery workers find due deliveries across tenants with one
-- SECURITY DEFINER function, webhook_deliveries_due, executable by
-- tenantd_worker only, that returns (tenant, delivery) pairs; they claim and
-- record each under db.WithTenant.

CREATE TABLE webhook_endpoints (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    url              text NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    description      text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    event_types      text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 100),
    status           text NOT NULL CHECK (status IN ('enabled', 'disabled')),
    disabled_reason  text CHECK (length(disabled_reason) BETWEEN 1 AND 500),
    -- The current secret and, for 24 h after a rotation, the previous one,
    -- sealed: never the plain secret when WEBHOOK_SECRET_KEY is set.
    secret           bytea NOT NULL,
    previous_secret  bytea,
    previous_expires_at timestamptz,
    -- Since when every attempt has failed (NULL after a success): after 3
    -- days of failures the endpoint is disabled.
    failing_since    timestamptz,
    version          bigint NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CHECK ((status = 'disabled') = (disabled_reason IS NOT NULL)),
    CHECK ((previous_secret IS NULL) = (previous_expires_at IS NULL))
);
ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_endpoints
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
-- The owner (and so webhook_deliveries_due below) reads enabled endpoints.
CREATE POLICY owner_due ON webhook_endpoints FOR SELECT TO CURRENT_USER USING (status = 'enabled');
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints TO tenantd_app;

CREATE TABLE webhook_deliveries (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    endpoint_id      uuid NOT NULL,
    -- webhook-id: the event's id, the same on every attempt.
    event_id         uuid NOT NULL,
    event_type       text NOT NULL CHECK (length(event_type) BETWEEN 1 AND 200),
    -- event: from the event log; test: POST …/test; recover: POST …/recover.
    origin           text NOT NULL CHECK (origin IN ('event', 'test', 'recover')),
    -- The body, exactly as signed and sent on every attempt.
    payload          text NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz,
    -- The worker sending it now, until lease_expires_at; after that any
    -- worker may claim it again (a crashed replica's claims come back).
    lease_owner      text CHECK (length(lease_owner) BETWEEN 1 AND 200),
    lease_expires_at timestamptz,
    last_attempt_at  timestamptz,
    last_status_code int,
    last_latency_ms  int,
    last_error       text CHECK (length(last_error) <= 500),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id) ON DELETE CASCADE,
    CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
-- An event is enqueued once per endpoint, however often it is delivered to
-- the subscriber.
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (tenant_id, endpoint_id, event_id) WHERE origin = 'event';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (tenant_id, endpoint_id, id);
-- The workers' scan across tenants (as refunds_pending_attempt).
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
CREATE POLICY owner_due ON webhook_deliveries FOR SELECT TO CURRENT_USER USING (status = 'pending');
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_deliveries TO tenantd_app;

CREATE TABLE webhook_attempts (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    delivery_id   uuid NOT NULL,
    attempt       int NOT NULL CHECK (attempt >= 1),
    attempted_at  timestamptz NOT NULL,
    status_code   int,
    latency_ms    int NOT NULL CHECK (latency_ms >= 0),
    error         text CHECK (length(error) <= 500),
    next_retry_at timestamptz,
    PRIMARY KEY (tenant_id, delivery_id, attempt),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, id) ON DELETE CASCADE
);
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_attempts
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
GRANT SELECT, INSERT, DELETE ON webhook_attempts TO tenantd_app;

-- Deliveries due at p_now, across tenants, as (tenant, delivery) pairs and
-- nothing else: pending, due, not leased (or the lease expired), of an
-- enabled endpoint, and at most p_per_endpoint per endpoint counting those
-- in flight, so one slow endpoint cannot take every worker. Confined to the
-- calling transaction's scope (app_scope_admits, migration 0018).
CREATE FUNCTION webhook_deliveries_due(p_now timestamptz, p_per_endpoint int, p_limit int)
RETURNS TABLE (tenant_id uuid, delivery_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    WITH pending AS (
        SELECT d.tenant_id, d.id, d.endpoint_id, d.next_attempt_at,
               d.lease_expires_at IS NOT NULL AND d.lease_expires_at > p_now AS in_flight
        FROM webhook_deliveries d
        JOIN webhook_endpoints e ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id AND e.status = 'enabled'
        WHERE d.status = 'pending' AND app_scope_admits(d.tenant_id)
          AND (d.next_attempt_at <= p_now OR d.lease_expires_at > p_now)
    ), ranked AS (
        SELECT p.tenant_id, p.id, p.next_attempt_at, p.in_flight,
               count(*) FILTER (WHERE p.in_flight) OVER (PARTITION BY p.tenant_id, p.endpoint_id) AS busy,
               row_number() OVER (PARTITION BY p.tenant_id, p.endpoint_id, p.in_flight
                                  ORDER BY p.next_attempt_at, p.id) AS rn
        FROM pending p
    )
    SELECT r.tenant_id, r.id FROM ranked r
    WHERE NOT r.in_flight AND r.rn + r.busy <= p_per_endpoint
    ORDER BY r.next_attempt_at
    LIMIT least(greatest(p_limit, 0), 1000)
$$;
REVOKE ALL ON FUNCTION webhook_deliveries_due(timestamptz, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION webhook_deliveries_due(timestamptz, int, int) TO tenantd_worker;
