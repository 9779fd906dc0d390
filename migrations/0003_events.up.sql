-- Event store and outbox (internal/events): the append-only events log, one
-- checkpoint per subscriber, parked (dead-letter) deliveries, and the one
-- cross-tenant read the dispatcher needs.

-- Global positions. CACHE 1 is required: the dispatcher's horizon reads
-- last_value and relies on every value up to it having been handed out
-- already, in increasing order.
CREATE SEQUENCE events_position_seq AS bigint CACHE 1;

CREATE TABLE events (
    tenant_id  uuid   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         uuid   NOT NULL,
    stream_id  text   NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    version    bigint NOT NULL CHECK (version > 0),
    type       text   NOT NULL CHECK (length(type) BETWEEN 1 AND 200),
    data       jsonb  NOT NULL,
    metadata   jsonb  NOT NULL DEFAULT '{}'::jsonb,
    position   bigint NOT NULL, -- set by events_before_insert
    txid       xid8   NOT NULL, -- the appending transaction, set by events_before_insert
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT events_stream_version_key UNIQUE (tenant_id, stream_id, version)
);
ALTER SEQUENCE events_position_seq OWNED BY events.position;
-- The dispatcher reads the log across tenants in position order: the one
-- index that does not lead with tenant_id.
CREATE UNIQUE INDEX events_position_key ON events (position);
CREATE INDEX events_tenant_position ON events (tenant_id, position);

-- Every appending transaction first takes a shared advisory lock
-- (class 1702232067, key 0; shared locks never wait for one another) and
-- holds it to its end, and only then draws positions. The dispatcher reads
-- the sequence and then the lock's holders: any transaction that may hold a
-- position up to what it read is among them, and once they have all ended
-- every such position is committed or never will be
-- (see internal/events/horizon.go). txid records the appending transaction.
-- The trigger overrides whatever position and txid the client sent.
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

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
-- The owner reads every event, for events_dispatch_batch only.
CREATE POLICY owner_dispatch ON events FOR SELECT TO CURRENT_USER USING (true);
-- Append-only: the runtime role can neither change nor remove an event.
GRANT SELECT, INSERT ON events TO tenantd_app;
-- USAGE for the trigger's nextval, SELECT for the dispatcher's horizon.
GRANT USAGE, SELECT ON SEQUENCE events_position_seq TO tenantd_app;

-- One checkpoint per subscriber: the position of the last event it handled
-- (or passed over). Platform data: subscribers read the whole log.
CREATE TABLE event_checkpoints (
    subscriber text   PRIMARY KEY CHECK (length(subscriber) BETWEEN 1 AND 100),
    position   bigint NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON event_checkpoints TO tenantd_app;

-- Deliveries a subscriber gave up on after its retries, kept until replayed.
CREATE TABLE dead_letters (
    tenant_id  uuid   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         uuid   NOT NULL,
    subscriber text   NOT NULL CHECK (length(subscriber) BETWEEN 1 AND 100),
    event_id   uuid   NOT NULL,
    position   bigint NOT NULL,
    error      text   NOT NULL,
    attempts   int    NOT NULL CHECK (attempts > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT dead_letters_subscriber_event_key UNIQUE (tenant_id, subscriber, event_id)
);
CREATE INDEX dead_letters_tenant_position ON dead_letters (tenant_id, position);
ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON dead_letters
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
GRANT SELECT, INSERT, UPDATE, DELETE ON dead_letters TO tenantd_app;

-- The dispatcher's one way across tenants: events with
-- p_after < position <= p_upto (the caller's settled horizon), optionally of
-- the given types, in position order. Runs as the owner.
CREATE FUNCTION events_dispatch_batch(p_after bigint, p_upto bigint, p_max int, p_types text[])
RETURNS TABLE (tenant_id uuid, id uuid, stream_id text, version bigint, type text,
               data jsonb, metadata jsonb, "position" bigint, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT e.tenant_id, e.id, e.stream_id, e.version, e.type, e.data, e.metadata, e.position, e.created_at
    FROM events e
    WHERE e.position > p_after AND e.position <= p_upto
      AND (p_types IS NULL OR e.type = ANY (p_types))
    ORDER BY e.position
    LIMIT least(greatest(p_max, 0), 1000)
$$;
REVOKE ALL ON FUNCTION events_dispatch_batch(bigint, bigint, int, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION events_dispatch_batch(bigint, bigint, int, text[]) TO tenantd_app;
