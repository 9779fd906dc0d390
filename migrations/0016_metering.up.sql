-- Durable metering. Every replica counts requests in memory and writes them
-- straight into usage_counters about once a second, one transaction per
-- flush. In the same transaction it records, in usage_flushes under
-- flush_key 'replica:<replica id>', the sequence number of the flush it
-- applied; a flush is applied only if its number is higher than the one
-- recorded. A replica writes its flushes one at a time and in order, and
-- retries a flush whose COMMIT reply it never got under the same number, so
-- the retry finds its number there and adds nothing: each count is applied
-- exactly once. Redis no longer holds usage (only rate limit state).
--
-- Expand only: an older binary ignores the column and keeps inserting the
-- names of its Redis flushes, which leave it NULL.
ALTER TABLE usage_flushes ADD COLUMN applied_seq bigint CHECK (applied_seq > 0);
GRANT UPDATE (applied_seq, flushed_at) ON usage_flushes TO tenantd_app;
