-- Idempotency keys: the stored outcome of a POST sent with an Idempotency-Key,
-- scoped to the tenant and the credential (identity.Principal.Actor()) that
-- sent it, kept 24 hours. status IS NULL while the first request is in
-- flight; locked_until is its lease, renewed while the handler runs, so the
-- key of a request whose process died can be taken over once it lapses.
-- claim_id fences the holder of the lease: only it may store or release.
CREATE TABLE idempotency_keys (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    credential       text NOT NULL CHECK (length(credential) BETWEEN 1 AND 512),
    key              text NOT NULL CHECK (key ~ '^[!-~]{1,255}$'),
    request_hash     bytea NOT NULL CHECK (octet_length(request_hash) = 32),
    claim_id         uuid NOT NULL DEFAULT gen_random_uuid(),
    status           int CHECK (status BETWEEN 100 AND 599),
    response_body    bytea,
    response_headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    locked_until     timestamptz NOT NULL DEFAULT now() + interval '60 seconds',
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL DEFAULT now() + interval '24 hours',
    PRIMARY KEY (tenant_id, credential, key),
    CONSTRAINT idempotency_keys_expiry CHECK (expires_at > created_at)
);
-- The sweep is the one query across tenants (through idempotency_sweep
-- below), so this index is led by expires_at, not tenant_id.
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
-- The owner (and so idempotency_sweep) may see and delete expired rows of
-- every tenant, and nothing else.
CREATE POLICY owner_sweep_read ON idempotency_keys FOR SELECT TO CURRENT_USER
    USING (expires_at <= now());
CREATE POLICY owner_sweep ON idempotency_keys FOR DELETE TO CURRENT_USER
    USING (expires_at <= now());
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO tenantd_app;

-- The one way to delete expired idempotency keys across tenants; returns how
-- many it deleted. Runs as the owner; takes no argument, so it can delete
-- nothing that has not expired.
CREATE FUNCTION idempotency_sweep()
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    WITH gone AS (
        DELETE FROM idempotency_keys WHERE expires_at <= now() RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION idempotency_sweep() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION idempotency_sweep() TO tenantd_app;
