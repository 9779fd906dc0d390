-- Write path (docs/concurrency.md): one NOTIFY per appending transaction,
-- sent by the database instead of a round trip per Append.
--
-- A statement-level trigger notifies the dispatchers' channel after every
-- INSERT into events. PostgreSQL folds identical notifications of one
-- transaction into one, delivers it at commit, and drops it on rollback, so
-- an order that appends twice still wakes each listener once.
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
