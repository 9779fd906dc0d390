-- Policies that Citus can distribute (docs/scaling.md): the same predicates
-- as 0001-0018, without the scalar sub-select around current_setting. Citus
-- refuses sub-queries in policies of distributed and reference tables
-- ("Subqueries are not supported in policies on distributed tables"); on
-- Citus each shard evaluates the policy on its worker, where db.WithTenant's
-- SET LOCAL is propagated. On plain PostgreSQL current_setting is STABLE, so
-- an index scan still takes it as an index condition.
ALTER POLICY tenant_isolation ON api_keys
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON audit_events
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON billing_lines
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_domain_delete ON casbin_rule
    USING (v1 = nullif(current_setting('app.tenant_id', true), '')::uuid::text);
ALTER POLICY tenant_domain_insert ON casbin_rule
    WITH CHECK (v1 = nullif(current_setting('app.tenant_id', true), '')::uuid::text);
ALTER POLICY tenant_domain_update ON casbin_rule
    USING (v1 = nullif(current_setting('app.tenant_id', true), '')::uuid::text)
    WITH CHECK (v1 = nullif(current_setting('app.tenant_id', true), '')::uuid::text);
ALTER POLICY tenant_isolation ON dead_letters
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON events
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON idempotency_keys
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON members
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON order_views
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON payments
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON products
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON refunds
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON reservations
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY platform_operator ON tenants
    USING (current_setting('app.platform', true) = 'on')
    WITH CHECK (current_setting('app.platform', true) = 'on');
ALTER POLICY tenant_self ON tenants
    USING (id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (id = nullif(current_setting('app.tenant_id', true), '')::uuid);
ALTER POLICY tenant_isolation ON usage_counters
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- The tenant and platform bindings of db.WithTenant and db.WithPlatform,
-- as SET LOCAL rather than set_config(..., true): Citus propagates SET LOCAL
-- (citus.propagate_set_commands = 'local') to every worker connection of
-- the transaction, open or opened later, and never a set_config. A function,
-- so the binding stays one parameterised statement sent with BEGIN; EXECUTE
-- runs the SET LOCAL as a statement of its own, which is what Citus
-- forwards (a SET LOCAL inside a multi-statement message would forward the
-- whole message).
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
GRANT EXECUTE ON FUNCTION app_bind_tenant(uuid), app_bind_platform() TO tenantd_app;
