-- Puts the scalar sub-selects back around current_setting in the policies
-- 0024 rewrote (every app.tenant_id reading, and app.platform compared
-- without coalesce; platform_audit_events' coalesce form never had one).
DO $$
DECLARE
    tenant constant text := $re$\(\(NULLIF\(current_setting\('app\.tenant_id'::text, true\), ''::text\)\)::uuid\)::text|\(NULLIF\(current_setting\('app\.tenant_id'::text, true\), ''::text\)\)::uuid$re$;
    platform constant text := $re$current_setting\('app\.platform'::text, true\)(?= =)$re$;
    p record;
    stmt text;
BEGIN
    FOR p IN
        SELECT tablename, policyname, qual, with_check
        FROM pg_policies
        WHERE schemaname = 'public'
          AND (qual ~ tenant OR qual ~ platform OR with_check ~ tenant OR with_check ~ platform)
        ORDER BY tablename, policyname
    LOOP
        stmt := format('ALTER POLICY %I ON public.%I', p.policyname, p.tablename);
        IF p.qual IS NOT NULL THEN
            stmt := stmt || ' USING ('
                || regexp_replace(regexp_replace(p.qual, tenant, '( SELECT \&)', 'g'), platform, '( SELECT \&)', 'g')
                || ')';
        END IF;
        IF p.with_check IS NOT NULL THEN
            stmt := stmt || ' WITH CHECK ('
                || regexp_replace(regexp_replace(p.with_check, tenant, '( SELECT \&)', 'g'), platform, '( SELECT \&)', 'g')
                || ')';
        END IF;
        EXECUTE stmt;
    END LOOP;
END
$$;

DROP FUNCTION app_bind_platform();
DROP FUNCTION app_bind_tenant(uuid);
