ALTER TABLE plans DROP COLUMN IF EXISTS max_event_streams;
