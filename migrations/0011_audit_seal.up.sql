-- Audit trail, sealed after commit (internal/audit): a request writes its
-- audit row with no tenant-wide lock, and one sealer links committed rows
-- into their tenant's hash chain afterwards, in commit order.
--
-- A row is inserted unsealed (seq, prev_hash and hash NULL) and gets a
-- position the way events do: audit_events_before_insert takes the shared
-- append lock (class 1702232067, key 0) and draws from events_position_seq,
-- so the events dispatcher's settled horizon (internal/events/horizon.go)
-- covers audit rows too. The sealer, holding a lease, takes unsealed rows at
-- or below the horizon in position order, tenant by tenant, and sets seq =
-- head + 1, prev_hash = the head's hash, hash = SHA-256(prev_hash ||
-- canonical fields) exactly as before. Sealed rows never change again: the
-- runtime role may update seq, prev_hash and hash only, and only of a row
-- not sealed yet.

-- FORCE binds the owner too: lift it while existing rows get positions.
ALTER TABLE audit_events NO FORCE ROW LEVEL SECURITY;

ALTER TABLE audit_events ADD COLUMN position bigint;
-- The inserting transaction, as events record it (NULL for rows written
-- before this migration): which write an entry committed with.
ALTER TABLE audit_events ADD COLUMN txid xid8;
-- Existing rows are sealed already; number them in seq order per tenant,
-- as appenders do (the shared lock keeps the horizon behind them).
SELECT pg_advisory_xact_lock_shared(1702232067, 0);
WITH numbered AS MATERIALIZED (
    SELECT tenant_id, seq, nextval('events_position_seq') AS position
    FROM (SELECT tenant_id, seq FROM audit_events ORDER BY tenant_id, seq) ordered
)
UPDATE audit_events a SET position = n.position
FROM numbered n
WHERE a.tenant_id = n.tenant_id AND a.seq = n.seq;

ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey;
ALTER TABLE audit_events
    ALTER COLUMN position SET NOT NULL,
    ALTER COLUMN seq DROP NOT NULL,
    ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN hash DROP NOT NULL,
    -- Sealing sets the three together.
    ADD CONSTRAINT audit_events_sealed_together
        CHECK ((seq IS NULL) = (hash IS NULL) AND (prev_hash IS NULL) = (hash IS NULL)),
    -- Every row must read back as a time the sealer can hash.
    ADD CONSTRAINT audit_events_occurred_at_finite CHECK (isfinite(occurred_at)),
    ADD PRIMARY KEY (tenant_id, id),
    ADD CONSTRAINT audit_events_seq_key UNIQUE (tenant_id, seq);

-- GET /v1/audit-events reads newest first by position.
DROP INDEX audit_events_actor;
DROP INDEX audit_events_action;
DROP INDEX audit_events_resource;
CREATE UNIQUE INDEX audit_events_tenant_position ON audit_events (tenant_id, position);
CREATE INDEX audit_events_actor ON audit_events (tenant_id, actor, position);
CREATE INDEX audit_events_action ON audit_events (tenant_id, action text_pattern_ops, position);
CREATE INDEX audit_events_resource ON audit_events (tenant_id, resource text_pattern_ops, position);
-- Unsealed rows, a handful at any time: per tenant for sealing, and across
-- tenants in position order for audit_unsealed (like events_position_key,
-- the one kind of index that does not lead with tenant_id).
CREATE INDEX audit_events_tenant_unsealed ON audit_events (tenant_id, position) WHERE hash IS NULL;
CREATE INDEX audit_events_unsealed ON audit_events (position) WHERE hash IS NULL;

-- An insert is unsealed whatever the client sent, and takes its position
-- under the shared append lock, held to the transaction's end.
CREATE FUNCTION audit_events_before_insert() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1702232067, 0);
    NEW.position := nextval('events_position_seq');
    NEW.txid := pg_current_xact_id();
    NEW.seq := NULL;
    NEW.prev_hash := NULL;
    NEW.hash := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_before_insert BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_before_insert();

-- History does not change: an update may only seal a row not sealed yet.
-- (It binds every role; a superuser can still disable triggers, which is
-- what `tenantd audit verify` is for.)
CREATE FUNCTION audit_events_before_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
BEGIN
    IF OLD.hash IS NOT NULL THEN
        RAISE EXCEPTION 'audit event % is sealed and cannot change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.tenant_id, NEW.id, NEW.position, NEW.txid, NEW.occurred_at, NEW.actor, NEW.action, NEW.resource,
        NEW.status, NEW.summary, NEW.request_id, NEW.ip, NEW.user_agent)
       IS DISTINCT FROM
       (OLD.tenant_id, OLD.id, OLD.position, OLD.txid, OLD.occurred_at, OLD.actor, OLD.action, OLD.resource,
        OLD.status, OLD.summary, OLD.request_id, OLD.ip, OLD.user_agent) THEN
        RAISE EXCEPTION 'audit event %: only seq, prev_hash and hash can be set, by sealing', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_before_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_before_update();

-- The owner reads every row, for audit_unsealed only.
CREATE POLICY owner_seal ON audit_events FOR SELECT TO CURRENT_USER USING (true);
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;

-- Sealing: the runtime role sets the chain's columns, under row-level
-- security (one tenant per transaction) and the trigger above.
GRANT UPDATE (seq, prev_hash, hash) ON audit_events TO tenantd_app;

-- The sealer's one way across tenants: which tenants have unsealed rows at
-- or below p_upto (the caller's settled horizon), oldest first, leaving out
-- p_skip (tenants the sealer is backing off from). Only ids and positions;
-- the rows themselves are read under row-level security.
CREATE FUNCTION audit_unsealed(p_upto bigint, p_max int, p_skip uuid[])
RETURNS TABLE (tenant_id uuid, "position" bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT a.tenant_id, a.position
    FROM audit_events a
    WHERE a.hash IS NULL AND a.position <= p_upto
      AND a.tenant_id <> ALL (coalesce(p_skip, '{}'))
    ORDER BY a.position
    LIMIT least(greatest(p_max, 0), 10000)
$$;
REVOKE ALL ON FUNCTION audit_unsealed(bigint, int, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_unsealed(bigint, int, uuid[]) TO tenantd_app;
