-- Tenant export and erasure (GDPR; issue 12, part 3; package gdpr).
--
-- 1. tenant_exports: a tenant's export jobs and their archives. A tenant
--    table like any other (tenant_id, row-level security ENABLEd and
--    FORCEd, the tenant_isolation policy). The archive lives in the row, so
--    that any replica serves the download; it is bounded (64 MiB, the CHECK
--    below and gdpr.MaxArchiveBytes). A job is leased: the worker building
--    it holds lease_owner until lease_expires_at and renews it; a crashed
--    replica's job is claimed again once its lease expires.
--    tenant_exports_due, executable by tenantd_worker only, finds the jobs
--    to run across tenants; the worker then claims and builds each under
--    db.WithTenant.
-- 2. tenant_tombstones: a platform table (no tenant_id, no personal data)
--    of erased tenants: id, slug, when, and the SHA-256 of the erasure
--    receipt. A tenant with an erased id can never be created again
--    (tenants_refuse_tombstoned).
-- 3. tenant_erase_rows: deletes the rows of one tenant table for the
--    tenant of the calling transaction, only while that tenant is
--    suspended. events, audit_events, usage_counters and billing_lines are
--    append-only for tenantd_app (no DELETE); erasure is their one way out.
--    Executable by tenantd_worker only.

CREATE TABLE tenant_exports (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               uuid NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    failure_reason   text CHECK (length(failure_reason) BETWEEN 1 AND 500),
    requested_by     text NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 200),
    attempts         int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    lease_owner      text CHECK (length(lease_owner) BETWEEN 1 AND 200),
    lease_expires_at timestamptz,
    archive          bytea CHECK (octet_length(archive) <= 67108864),
    size             bigint CHECK (size >= 0),
    sha256           text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK ((status = 'failed') = (failure_reason IS NOT NULL)),
    CHECK ((status = 'succeeded') = (archive IS NOT NULL AND size IS NOT NULL AND sha256 IS NOT NULL)),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
-- One open job per tenant at a time (a second request is a conflict).
CREATE UNIQUE INDEX tenant_exports_one_open ON tenant_exports (tenant_id) WHERE status IN ('pending', 'running');
-- The workers' scan across tenants.
CREATE INDEX tenant_exports_open ON tenant_exports (created_at) WHERE status IN ('pending', 'running');
ALTER TABLE tenant_exports ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_exports FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_exports
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
-- The owner (and so tenant_exports_due below) reads open jobs.
CREATE POLICY owner_due ON tenant_exports FOR SELECT TO CURRENT_USER USING (status IN ('pending', 'running'));
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_exports TO tenantd_app;

-- Export jobs to run at p_now, across tenants, as (tenant, export) pairs
-- and nothing else: pending and not leased, or running with an expired
-- lease (its worker died). Confined to the calling transaction's scope
-- (app_scope_admits, migration 0018).
CREATE FUNCTION tenant_exports_due(p_now timestamptz, p_limit int)
RETURNS TABLE (tenant_id uuid, export_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT x.tenant_id, x.id FROM tenant_exports x
    WHERE x.status IN ('pending', 'running') AND app_scope_admits(x.tenant_id)
      AND (x.lease_expires_at IS NULL OR x.lease_expires_at <= p_now)
    ORDER BY x.created_at
    LIMIT least(greatest(p_limit, 0), 100)
$$;
REVOKE ALL ON FUNCTION tenant_exports_due(timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_exports_due(timestamptz, int) TO tenantd_worker;

CREATE TABLE tenant_tombstones (
    -- The erased tenant's id: never a tenant's id again.
    id             uuid PRIMARY KEY,
    -- Kept for the operator's records; a new tenant may take it again
    -- (docs/security.md, "Tenant export and erasure").
    slug           text NOT NULL CHECK (slug ~ '^[a-z0-9-]{3,40}$'),
    erased_at      timestamptz NOT NULL,
    receipt_sha256 text NOT NULL CHECK (receipt_sha256 ~ '^[0-9a-f]{64}$')
);
ALTER TABLE tenant_tombstones ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_tombstones FORCE ROW LEVEL SECURITY;
-- Written only by the erasing transaction, scoped to the erased tenant;
-- read by the operator (platform scope) and that transaction. Never
-- updated or deleted.
CREATE POLICY tenant_erasure ON tenant_tombstones FOR INSERT
    WITH CHECK (id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
CREATE POLICY tombstone_read ON tenant_tombstones FOR SELECT
    USING (id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid)
           OR (SELECT current_setting('app.platform', true)) = 'on');
-- The owner reads every tombstone, for tenants_refuse_tombstoned only.
CREATE POLICY owner_lookup ON tenant_tombstones FOR SELECT TO CURRENT_USER USING (true);
GRANT SELECT, INSERT ON tenant_tombstones TO tenantd_app;

-- No tenant is ever created (or renumbered) with an erased id, whatever
-- the path (the API, a restore, SQL). SECURITY DEFINER so that it sees
-- every tombstone in any scope; nobody may call it except as the trigger.
CREATE FUNCTION tenants_refuse_tombstoned() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tenant_tombstones t WHERE t.id = NEW.id) THEN
        RAISE EXCEPTION 'tenant id % was erased and cannot be used again', NEW.id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'tenant_tombstones_pkey';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION tenants_refuse_tombstoned() FROM PUBLIC;
CREATE TRIGGER tenants_refuse_tombstoned BEFORE INSERT OR UPDATE OF id ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenants_refuse_tombstoned();

-- Deletes every row of p_table (a table of schema public with a tenant_id
-- column) of the calling transaction's tenant, which must be suspended,
-- and returns how many. Refuses (42501) without a tenant, for a tenant
-- that is not suspended, and for any other table. Runs as the owner, whom
-- FORCE ROW LEVEL SECURITY binds too: the tables' tenant_isolation
-- policies admit the tenant's rows only.
CREATE FUNCTION tenant_erase_rows(p_table regclass)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    v_tenant uuid := nullif(current_setting('app.tenant_id', true), '')::uuid;
    v_rows bigint;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'tenant_erase_rows runs only in a tenant''s transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = v_tenant AND t.status = 'suspended') THEN
        RAISE EXCEPTION 'tenant % is not suspended: only a suspended tenant is erased', v_tenant
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.oid = p_table AND n.nspname = 'public' AND c.relkind IN ('r', 'p')
          AND a.attname = 'tenant_id' AND NOT a.attisdropped) THEN
        RAISE EXCEPTION '% is not a tenant table', p_table
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('DELETE FROM %s WHERE tenant_id = $1', p_table) USING v_tenant;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;
REVOKE ALL ON FUNCTION tenant_erase_rows(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_erase_rows(regclass) TO tenantd_worker;
