-- tenant_erase_rows (0022) has had no caller since tenant erasure became
-- one owner function, tenant_erase (0028), yet tenantd_worker could still
-- execute it: a SECURITY DEFINER function nobody needs is only surface.
--
-- tenants_plan_exists (0026, on Citus only) runs as the caller and reads
-- plans by an unqualified name: pin its search_path as every other
-- function's, so a caller's search_path cannot point it at another plans.
--
-- One DO block, each statement its own EXECUTE (citusdata/citus#6608).
DO $do$
BEGIN
    EXECUTE 'DROP FUNCTION tenant_erase_rows(regclass)';
    IF to_regprocedure('tenants_plan_exists()') IS NOT NULL THEN
        EXECUTE 'ALTER FUNCTION tenants_plan_exists() SET search_path = pg_catalog, public';
    END IF;
END
$do$;
