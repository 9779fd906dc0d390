-- Back to 0028: tenant_erase_rows as 0022 created it, and
-- tenants_plan_exists with the caller's search_path.
DO $do$
BEGIN
    EXECUTE $f$
CREATE FUNCTION tenant_erase_rows(p_table regclass)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $body$
DECLARE
    v_tenant uuid := nullif(current_setting('app.tenant_id', true), '')::uuid;
    v_rows bigint;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'tenant_erase_rows runs only in a tenant''s transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = v_tenant AND t.status = 'suspended') THEN
        RAISE EXCEPTION 'tenant % is not suspended: only a suspended tenant is erased', v_tenant
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.oid = p_table AND n.nspname = 'public' AND c.relkind IN ('r', 'p')
          AND a.attname = 'tenant_id' AND NOT a.attisdropped) THEN
        RAISE EXCEPTION '% is not a tenant table', p_table
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('DELETE FROM %s WHERE tenant_id = $1', p_table) USING v_tenant;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$body$
$f$;
    EXECUTE 'REVOKE ALL ON FUNCTION tenant_erase_rows(regclass) FROM PUBLIC';
    EXECUTE 'GRANT EXECUTE ON FUNCTION tenant_erase_rows(regclass) TO tenantd_worker';
    IF to_regprocedure('tenants_plan_exists()') IS NOT NULL THEN
        EXECUTE 'ALTER FUNCTION tenants_plan_exists() RESET search_path';
    END IF;
END
$do$;
