-- Back to chains written under a per-tenant lock. Rows not sealed yet have
-- no place in such a chain: stop the servers writing, let the sealer finish
-- (`tenantd audit verify` shows no unsealed rows), then migrate down. With
-- unsealed rows left this refuses, rather than lose them.
ALTER TABLE audit_events NO FORCE ROW LEVEL SECURITY;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_events WHERE hash IS NULL) THEN
        RAISE EXCEPTION 'audit_events has rows not sealed yet: run the sealer (tenantd serve) until tenantd audit verify shows none, then migrate down';
    END IF;
END
$$;

DROP FUNCTION IF EXISTS audit_unsealed(bigint, int, uuid[]);
REVOKE UPDATE (seq, prev_hash, hash) ON audit_events FROM tenantd_app;
DROP POLICY IF EXISTS owner_seal ON audit_events;
DROP TRIGGER IF EXISTS audit_events_before_update ON audit_events;
DROP FUNCTION IF EXISTS audit_events_before_update();
DROP TRIGGER IF EXISTS audit_events_before_insert ON audit_events;
DROP FUNCTION IF EXISTS audit_events_before_insert();

DROP INDEX IF EXISTS audit_events_unsealed;
DROP INDEX IF EXISTS audit_events_tenant_unsealed;
DROP INDEX IF EXISTS audit_events_tenant_position;
DROP INDEX IF EXISTS audit_events_actor;
DROP INDEX IF EXISTS audit_events_action;
DROP INDEX IF EXISTS audit_events_resource;

ALTER TABLE audit_events
    DROP CONSTRAINT audit_events_seq_key,
    DROP CONSTRAINT audit_events_pkey,
    DROP CONSTRAINT audit_events_sealed_together,
    DROP CONSTRAINT audit_events_occurred_at_finite;
ALTER TABLE audit_events
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL,
    DROP COLUMN position,
    DROP COLUMN txid;
ALTER TABLE audit_events ADD PRIMARY KEY (tenant_id, seq);
CREATE INDEX audit_events_actor ON audit_events (tenant_id, actor, seq);
CREATE INDEX audit_events_action ON audit_events (tenant_id, action text_pattern_ops, seq);
CREATE INDEX audit_events_resource ON audit_events (tenant_id, resource text_pattern_ops, seq);

ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
