DROP FUNCTION IF EXISTS auth_api_key_lookup(text);
DROP TABLE IF EXISTS products;
DROP TABLE IF EXISTS api_keys;
DROP TABLE IF EXISTS tenants;
DROP TABLE IF EXISTS plans;
-- tenantd_app is a cluster-wide role that other databases may share; it is
-- left in place. Drop it by hand once no database uses it.
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM tenantd_app', current_database());
EXCEPTION WHEN undefined_object THEN
    NULL;
END
$$;
REVOKE ALL ON SCHEMA public FROM tenantd_app;
REVOKE ALL ON schema_migrations FROM tenantd_app;
