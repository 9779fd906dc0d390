DROP FUNCTION IF EXISTS events_dispatch_batch(bigint, bigint, int, text[]);
DROP TABLE IF EXISTS dead_letters;
DROP TABLE IF EXISTS event_checkpoints;
DROP TABLE IF EXISTS events; -- drops events_position_seq (OWNED BY) and the trigger
DROP FUNCTION IF EXISTS events_before_insert();
