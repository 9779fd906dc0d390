-- as tenantd_owner (CREATEROLE): make SET LOCAL propagation the runtime role's default
ALTER ROLE tenantd_app SET citus.propagate_set_commands = 'local';
-- the binding function: parameterised, one round trip with BEGIN
CREATE FUNCTION app_bind_tenant(p_tenant uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
BEGIN
    IF p_tenant IS NULL THEN
        RAISE EXCEPTION 'no tenant' USING ERRCODE = '22004';
    END IF;
    EXECUTE format('SET LOCAL app.tenant_id = %L', p_tenant::text);
END
$$;
SELECT proname, pronamespace::regnamespace FROM pg_proc WHERE proname = 'app_bind_tenant';
