-- Positions of events and audit_events drawn by functions the appending
-- INSERT evaluates, instead of BEFORE INSERT triggers (issue 14), on plain
-- PostgreSQL and Citus alike.
--
-- On Citus a trigger of a distributed table runs on the worker holding the
-- shard: it would draw from that worker's copy of events_position_seq (a
-- disjoint range per node), take the append lock and send the NOTIFY there,
-- where neither the dispatcher's horizon (internal/events/horizon.go reads
-- the sequence and the lock's holders) nor its LISTEN looks
-- (docs/citus/README.md section 4). Citus evaluates the volatile functions
-- of a router INSERT's VALUES, column defaults included, on the
-- coordinator, in the appending transaction, before it sends the row: so
-- the sequence, the lock and the notification stay on the coordinator,
-- as they are on plain PostgreSQL.
--
-- internal/events.Append and internal/audit name the functions in their
-- VALUES; the columns' defaults call them too, for any other writer.
-- What the triggers also did and this cannot: override a position the
-- client sends. The runtime role can insert a row of its own tenant at a
-- position of its choosing; such a row misleads only that tenant's
-- readers (a dispatcher or sealer may pass over it), never another tenant.

-- A position under the shared append lock (class 1702232067, key 0; shared
-- locks never wait for one another), held to the transaction's end and
-- taken before the position is drawn: the dispatcher reads the sequence and
-- then the lock's holders, so any transaction that may hold a position up
-- to what it read is among them (see internal/events/horizon.go). Audit
-- rows take their positions this way, so the same horizon covers them.
CREATE FUNCTION next_append_position() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1702232067, 0);
    RETURN nextval('events_position_seq');
END
$$;

-- An event's position, and a notification of the dispatchers' channel.
-- PostgreSQL folds identical notifications of one transaction into one,
-- delivers it at commit and drops it on rollback: an order that appends
-- twice still wakes each listener once (as the statement trigger did).
CREATE FUNCTION events_next_position() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM pg_notify('tenantd_events', '');
    RETURN next_append_position();
END
$$;

DROP TRIGGER events_before_insert ON events;
DROP FUNCTION events_before_insert();
DROP TRIGGER events_notify ON events;
DROP FUNCTION events_notify();
DROP TRIGGER audit_events_before_insert ON audit_events;
DROP FUNCTION audit_events_before_insert();

-- txid records the appending transaction (on Citus, the coordinator's; the
-- workers' ids of the same transaction differ per node).
ALTER TABLE events
    ALTER COLUMN position SET DEFAULT events_next_position(),
    ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
ALTER TABLE audit_events
    ALTER COLUMN position SET DEFAULT next_append_position(),
    ALTER COLUMN txid SET DEFAULT pg_current_xact_id();

-- Citus refuses a unique key without the distribution column: positions
-- are unique per tenant by key (and across tenants by the sequence). The
-- dispatcher still reads across tenants in position order.
DROP INDEX events_position_key;
DROP INDEX events_tenant_position;
ALTER TABLE events ADD CONSTRAINT events_tenant_position_key UNIQUE (tenant_id, position);
CREATE INDEX events_position ON events (position);

-- An audit row is inserted unsealed: the runtime role may not insert seq,
-- prev_hash or hash (the trigger used to clear them), only seal them later
-- (0011's column UPDATE grant). Citus copies column privileges to the shards.
REVOKE INSERT ON audit_events FROM tenantd_app;
GRANT INSERT (tenant_id, id, occurred_at, actor, action, resource, status, summary, request_id, ip, user_agent,
              position, txid) ON audit_events TO tenantd_app;

-- A request's audit entry, appended only if the transaction has written
-- something (it has a transaction id): the check and the append in one
-- round trip. A function, because on Citus the INSERT ... SELECT ... WHERE
-- form is pulled to the coordinator and sent as COPY, which row-level
-- security refuses; here the INSERT is a router INSERT ... VALUES.
-- Runs as the caller, under row-level security.
CREATE FUNCTION audit_append_if_wrote(p_tenant uuid, p_id uuid, p_occurred_at timestamptz, p_actor text,
    p_action text, p_resource text, p_status int, p_summary jsonb, p_request_id text, p_ip inet, p_user_agent text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
BEGIN
    IF pg_current_xact_id_if_assigned() IS NULL THEN
        RETURN false;
    END IF;
    INSERT INTO audit_events (tenant_id, id, occurred_at, actor, action, resource, status, summary, request_id, ip,
                              user_agent, position)
    VALUES (p_tenant, p_id, p_occurred_at, p_actor, p_action, p_resource, p_status, p_summary, p_request_id, p_ip,
            p_user_agent, next_append_position());
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION next_append_position() FROM PUBLIC;
REVOKE ALL ON FUNCTION events_next_position() FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_append_if_wrote(uuid, uuid, timestamptz, text, text, text, int, jsonb, text, inet, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION next_append_position() TO tenantd_app;
GRANT EXECUTE ON FUNCTION events_next_position() TO tenantd_app;
GRANT EXECUTE ON FUNCTION audit_append_if_wrote(uuid, uuid, timestamptz, text, text, text, int, jsonb, text, inet, text)
    TO tenantd_app;
