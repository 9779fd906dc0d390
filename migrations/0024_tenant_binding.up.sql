-- The tenant binding that reaches every node (issue 14), on plain
-- PostgreSQL and Citus alike.
--
-- 1. app_bind_tenant(uuid) and app_bind_platform(): the tenant and platform
--    bindings of db.WithTenant, db.SetTenant, db.WithPlatform and the
--    billing flush, as SET LOCAL rather than set_config(..., true). Citus
--    forwards a SET LOCAL (with citus.propagate_set_commands = 'local',
--    set by 0026 on Citus) to every worker connection of the transaction,
--    open or opened later, and never a set_config; policies are evaluated
--    on the workers, so set_config there leaves every read empty, and the
--    SECURITY DEFINER functions' scope (app_scope_admits, 0018) open
--    (docs/citus/README.md section 1). A function, so that the binding
--    stays one parameterised statement sent together with BEGIN: EXECUTE
--    runs the SET LOCAL as a statement of its own, which is what Citus
--    forwards (a SET LOCAL inside a multi-statement message would forward
--    the whole message). Both end with the transaction, like set_config's
--    is_local.
CREATE FUNCTION app_bind_tenant(p_tenant uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    IF p_tenant IS NULL THEN
        RAISE EXCEPTION 'app_bind_tenant: no tenant' USING ERRCODE = '22004';
    END IF;
    EXECUTE format('SET LOCAL app.tenant_id = %L', p_tenant::text);
END
$$;

CREATE FUNCTION app_bind_platform() RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    SET LOCAL app.platform = 'on';
END
$$;

-- The runtime role binds (and tenantd_worker, its member, through it). The
-- owner owns them.
REVOKE ALL ON FUNCTION app_bind_tenant(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION app_bind_platform() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app_bind_tenant(uuid) TO tenantd_app;
GRANT EXECUTE ON FUNCTION app_bind_platform() TO tenantd_app;

-- 2. Every policy without the scalar sub-select around current_setting:
--    `tenant_id = (SELECT nullif(current_setting(...), '')::uuid)` becomes
--    `tenant_id = nullif(current_setting(...), '')::uuid`, and the same for
--    the casbin domains, tenants and tenant_tombstones. Citus refuses
--    sub-queries in policies of distributed and reference tables
--    ("Subqueries are not supported in policies on distributed tables").
--    The predicates are otherwise unchanged. On plain PostgreSQL
--    current_setting is STABLE, so an index scan still takes the policy as
--    an index condition, as the sub-select's InitPlan was.
--
--    The policies are read from the catalog, so that every table of
--    0001-0023 is covered without restating each policy: each expression's
--    `( SELECT <e> AS <alias>)` becomes `(<e>)`; the block fails if a
--    sub-select is left in any policy.
DO $$
DECLARE
    sub constant text := '\( SELECT (.+?) AS ("[^"]+"|[a-z_]+)\)';
    p record;
    stmt text;
BEGIN
    FOR p IN
        SELECT tablename, policyname, qual, with_check
        FROM pg_policies
        WHERE schemaname = 'public'
          AND (qual ~ '\( SELECT ' OR with_check ~ '\( SELECT ')
        ORDER BY tablename, policyname
    LOOP
        stmt := format('ALTER POLICY %I ON public.%I', p.policyname, p.tablename);
        IF p.qual IS NOT NULL THEN
            stmt := stmt || ' USING (' || regexp_replace(p.qual, sub, '(\1)', 'g') || ')';
        END IF;
        IF p.with_check IS NOT NULL THEN
            stmt := stmt || ' WITH CHECK (' || regexp_replace(p.with_check, sub, '(\1)', 'g') || ')';
        END IF;
        EXECUTE stmt;
    END LOOP;

    SELECT string_agg(tablename || '.' || policyname, ', ') INTO stmt
    FROM pg_policies
    WHERE schemaname = 'public' AND (qual ~* '\mSELECT\M' OR with_check ~* '\mSELECT\M');
    IF stmt IS NOT NULL THEN
        RAISE EXCEPTION 'policies still hold a sub-select: %', stmt;
    END IF;
END
$$;
