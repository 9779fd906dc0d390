-- Audit trail (internal/audit): who did what, when and from where, per
-- tenant, append-only and hash-chained.
--
-- Each tenant's events form one chain numbered seq = 1, 2, 3, … with no gap:
-- hash = SHA-256(prev_hash || canonical encoding of the row's fields), and
-- prev_hash is the previous row's hash (32 zero bytes for seq 1). Appends
-- are serialised per tenant by a transaction advisory lock held to commit,
-- so seq order is commit order. `tenantd audit verify` recomputes the chain:
-- a row changed or removed behind the application's back (by a superuser or
-- the owner, who alone can) breaks it at that row.
CREATE TABLE audit_events (
    tenant_id   uuid        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    seq         bigint      NOT NULL CHECK (seq > 0),
    id          uuid        NOT NULL,
    occurred_at timestamptz NOT NULL,
    actor       text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 300),
    action      text        NOT NULL CHECK (length(action) BETWEEN 1 AND 200),
    resource    text        NOT NULL CHECK (length(resource) <= 500),
    -- The HTTP status of the request, or 0 when not known at write time.
    status      int         NOT NULL CHECK (status = 0 OR status BETWEEN 100 AND 599),
    -- A small, redacted before/after summary; never secrets.
    summary     jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(summary) = 'object'),
    request_id  text        NOT NULL DEFAULT '' CHECK (length(request_id) <= 128),
    ip          inet,
    user_agent  text        NOT NULL DEFAULT '' CHECK (length(user_agent) <= 300),
    prev_hash   bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (tenant_id, seq)
);
-- The filters of GET /v1/audit-events, each read newest first by seq.
CREATE INDEX audit_events_actor ON audit_events (tenant_id, actor, seq);
CREATE INDEX audit_events_action ON audit_events (tenant_id, action text_pattern_ops, seq);
CREATE INDEX audit_events_resource ON audit_events (tenant_id, resource text_pattern_ops, seq);
CREATE INDEX audit_events_occurred_at ON audit_events (tenant_id, occurred_at);
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
-- Append-only: the runtime role can neither change nor remove an event. The
-- tenant's erasure removes them by the cascade above, which runs as the owner.
GRANT SELECT, INSERT ON audit_events TO tenantd_app;
