-- Back to positions drawn by BEFORE INSERT triggers and the statement
-- NOTIFY trigger (0003, 0011, 0012).
DROP FUNCTION IF EXISTS audit_append_if_wrote(uuid, uuid, timestamptz, text, text, text, int, jsonb, text, inet, text);

REVOKE INSERT (tenant_id, id, occurred_at, actor, action, resource, status, summary, request_id, ip, user_agent,
               position, txid) ON audit_events FROM tenantd_app;
GRANT INSERT ON audit_events TO tenantd_app;

ALTER TABLE events DROP CONSTRAINT IF EXISTS events_tenant_position_key;
DROP INDEX IF EXISTS events_position;
CREATE UNIQUE INDEX events_position_key ON events (position);
CREATE INDEX events_tenant_position ON events (tenant_id, position);

ALTER TABLE events
    ALTER COLUMN position DROP DEFAULT,
    ALTER COLUMN txid DROP DEFAULT;
ALTER TABLE audit_events
    ALTER COLUMN position DROP DEFAULT,
    ALTER COLUMN txid DROP DEFAULT;

CREATE FUNCTION events_before_insert() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1702232067, 0);
    NEW.txid := pg_current_xact_id();
    NEW.position := nextval('events_position_seq');
    RETURN NEW;
END
$$;
CREATE TRIGGER events_before_insert BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_before_insert();

CREATE FUNCTION events_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
BEGIN
    PERFORM pg_notify('tenantd_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_notify();

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

DROP FUNCTION IF EXISTS events_next_position();
DROP FUNCTION IF EXISTS next_append_position();
