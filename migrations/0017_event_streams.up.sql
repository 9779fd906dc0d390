-- Open event streams per tenant (GET /v1/events/stream). Each plan caps how
-- many streams one tenant may hold open at once, across every replica
-- (internal/events.StreamLimit counts leases in Redis); past the cap a new
-- stream is refused with 429 rate_limited. 0 refuses every stream.
--
-- Expand only: an older binary does not read the column.
ALTER TABLE plans ADD COLUMN max_event_streams int NOT NULL DEFAULT 5 CHECK (max_event_streams >= 0);
UPDATE plans SET max_event_streams = CASE name
    WHEN 'free'       THEN 5
    WHEN 'pro'        THEN 25
    WHEN 'enterprise' THEN 100
    ELSE max_event_streams
END;
