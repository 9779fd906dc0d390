-- The worker role (finding L6 of issue 11). The SECURITY DEFINER functions
-- that read across tenants serve the background workers (event dispatcher,
-- audit sealer, order sweeper, payments reconciler, idempotency sweeper,
-- metering) and the operator's billing exports. Until now tenantd_app, the
-- role every request runs as, could execute them too: 0018 confines them to
-- the calling transaction's scope, but with no tenant set they still
-- reached every tenant. Now only tenantd_worker executes them; the workers
-- connect as it through their own pool (WORKER_DATABASE_URL). tenantd_app
-- keeps the two lookups that run before a tenant is known
-- (auth_api_key_lookup, auth_oidc_tenants).
--
-- tenantd_worker is a member of tenantd_app: it has the runtime role's
-- table privileges and is bound by the same row-level security, owns
-- nothing and cannot bypass it. tenantd_app is not a member of
-- tenantd_worker, so it cannot SET ROLE to it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantd_worker') THEN
        CREATE ROLE tenantd_worker LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- Other databases of the cluster may migrate at the same time and grant
-- the same membership: a duplicate is harmless.
DO $$
BEGIN
    IF NOT pg_has_role('tenantd_worker', 'tenantd_app', 'MEMBER') THEN
        GRANT tenantd_app TO tenantd_worker;
    END IF;
EXCEPTION WHEN unique_violation THEN
    NULL;
END
$$;

REVOKE EXECUTE ON FUNCTION events_dispatch_batch(bigint, bigint, int, text[]) FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION audit_unsealed(bigint, int, uuid[]) FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION idempotency_sweep() FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION orders_expired(timestamptz, int) FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION payments_unsettled(timestamptz, int) FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION refunds_due(timestamptz, int) FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION billing_active_products() FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION billing_close_period(text) FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION billing_export_rows(text, boolean) FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION billing_export_tenants(text, boolean) FROM tenantd_app;
REVOKE EXECUTE ON FUNCTION billing_usage_page(text, uuid, int) FROM tenantd_app;

GRANT EXECUTE ON FUNCTION events_dispatch_batch(bigint, bigint, int, text[]) TO tenantd_worker;
GRANT EXECUTE ON FUNCTION audit_unsealed(bigint, int, uuid[]) TO tenantd_worker;
GRANT EXECUTE ON FUNCTION idempotency_sweep() TO tenantd_worker;
GRANT EXECUTE ON FUNCTION orders_expired(timestamptz, int) TO tenantd_worker;
GRANT EXECUTE ON FUNCTION payments_unsettled(timestamptz, int) TO tenantd_worker;
GRANT EXECUTE ON FUNCTION refunds_due(timestamptz, int) TO tenantd_worker;
GRANT EXECUTE ON FUNCTION billing_active_products() TO tenantd_worker;
GRANT EXECUTE ON FUNCTION billing_close_period(text) TO tenantd_worker;
GRANT EXECUTE ON FUNCTION billing_export_rows(text, boolean) TO tenantd_worker;
GRANT EXECUTE ON FUNCTION billing_export_tenants(text, boolean) TO tenantd_worker;
GRANT EXECUTE ON FUNCTION billing_usage_page(text, uuid, int) TO tenantd_worker;
