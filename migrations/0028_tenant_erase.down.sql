DROP FUNCTION IF EXISTS tenant_erase(text, regclass[], bigint, timestamptz);
