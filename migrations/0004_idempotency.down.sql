DROP FUNCTION IF EXISTS idempotency_sweep();
DROP TABLE IF EXISTS idempotency_keys;
