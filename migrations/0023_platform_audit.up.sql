-- Operator actions get an audit trail of their own (issue 12, part 4), and
-- the operator reads dead letters over HTTP.
--
-- 1. platform_audit_events: every mutating /admin/v1 request (creating,
--    changing, erasing tenants; billing exports; replaying or discarding
--    dead letters), chained like a tenant's audit trail: seq from 1,
--    prev_hash, and hash computed exactly as for audit_events with the nil
--    tenant id (internal/audit). Operator actions are rare, so a row is
--    chained when it is inserted, under a transaction-level advisory lock
--    (no sealer). A platform table without tenant_id: only the platform
--    scope (db.WithPlatform) reads or appends; nothing updates or deletes.
CREATE TABLE platform_audit_events (
    seq         bigint      PRIMARY KEY CHECK (seq > 0),
    id          uuid        NOT NULL UNIQUE,
    occurred_at timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    resource    text        NOT NULL,
    status      int         NOT NULL CHECK (status = 0 OR status BETWEEN 100 AND 599),
    summary     jsonb       NOT NULL DEFAULT '{}',
    request_id  text        NOT NULL DEFAULT '',
    ip          inet,
    user_agent  text        NOT NULL DEFAULT '',
    prev_hash   bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (length(hash) = 32)
);
ALTER TABLE platform_audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_operator ON platform_audit_events
    USING (coalesce(current_setting('app.platform', true), '') = 'on')
    WITH CHECK (coalesce(current_setting('app.platform', true), '') = 'on');
GRANT SELECT, INSERT ON platform_audit_events TO tenantd_app;

-- 2. Dead letters across tenants, for GET /admin/v1/dead-letters. Like the
--    other cross-tenant functions (0018, 0019): SECURITY DEFINER, pinned
--    search_path, confined to the caller's scope, executable by the
--    worker role only (the operator routes read through its pool).
CREATE POLICY owner_operator ON dead_letters FOR SELECT TO CURRENT_USER USING (true);

-- A page of dead letters (no event data: the operator reads one, in its
-- tenant's transaction, for that), oldest first by id (UUIDv7), after
-- p_after, optionally of one subscriber and one tenant.
CREATE FUNCTION dead_letters_page(p_subscriber text, p_tenant uuid, p_after uuid, p_limit int)
RETURNS TABLE (tenant_id uuid, id uuid, subscriber text, event_id uuid, event_type text,
               error text, attempts int, created_at timestamptz, updated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT d.tenant_id, d.id, d.subscriber, d.event_id, e.type, d.error, d.attempts, d.created_at, d.updated_at
    FROM dead_letters d JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
    WHERE app_scope_admits(d.tenant_id)
      AND (p_subscriber IS NULL OR d.subscriber = p_subscriber)
      AND (p_tenant IS NULL OR d.tenant_id = p_tenant)
      AND (p_after IS NULL OR d.id > p_after)
    ORDER BY d.id
    LIMIT least(greatest(p_limit, 1), 1000)
$$;
REVOKE ALL ON FUNCTION dead_letters_page(text, uuid, uuid, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dead_letters_page(text, uuid, uuid, int) TO tenantd_worker;

-- The tenant of a dead letter, so that the operator's routes by id can work
-- in that tenant's transaction.
CREATE FUNCTION dead_letter_tenant(p_id uuid)
RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT d.tenant_id FROM dead_letters d WHERE d.id = p_id AND app_scope_admits(d.tenant_id)
$$;
REVOKE ALL ON FUNCTION dead_letter_tenant(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dead_letter_tenant(uuid) TO tenantd_worker;
