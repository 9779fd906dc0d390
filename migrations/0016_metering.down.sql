REVOKE UPDATE (applied_seq, flushed_at) ON usage_flushes FROM tenantd_app;
DELETE FROM usage_flushes WHERE applied_seq IS NOT NULL;
ALTER TABLE usage_flushes DROP COLUMN IF EXISTS applied_seq;
