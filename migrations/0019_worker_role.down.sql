-- Back to 0018: tenantd_app executes the workers' functions again. The role
-- and its membership in tenantd_app stay: roles are cluster-wide, and other
-- databases may use them.
GRANT EXECUTE ON FUNCTION events_dispatch_batch(bigint, bigint, int, text[]) TO tenantd_app;
GRANT EXECUTE ON FUNCTION audit_unsealed(bigint, int, uuid[]) TO tenantd_app;
GRANT EXECUTE ON FUNCTION idempotency_sweep() TO tenantd_app;
GRANT EXECUTE ON FUNCTION orders_expired(timestamptz, int) TO tenantd_app;
GRANT EXECUTE ON FUNCTION payments_unsettled(timestamptz, int) TO tenantd_app;
GRANT EXECUTE ON FUNCTION refunds_due(timestamptz, int) TO tenantd_app;
GRANT EXECUTE ON FUNCTION billing_active_products() TO tenantd_app;
GRANT EXECUTE ON FUNCTION billing_close_period(text) TO tenantd_app;
GRANT EXECUTE ON FUNCTION billing_export_rows(text, boolean) TO tenantd_app;
GRANT EXECUTE ON FUNCTION billing_export_tenants(text, boolean) TO tenantd_app;
GRANT EXECUTE ON FUNCTION billing_usage_page(text, uuid, int) TO tenantd_app;
REVOKE EXECUTE ON FUNCTION events_dispatch_batch(bigint, bigint, int, text[]) FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION audit_unsealed(bigint, int, uuid[]) FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION idempotency_sweep() FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION orders_expired(timestamptz, int) FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION payments_unsettled(timestamptz, int) FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION refunds_due(timestamptz, int) FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION billing_active_products() FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION billing_close_period(text) FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION billing_export_rows(text, boolean) FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION billing_export_tenants(text, boolean) FROM tenantd_worker;
REVOKE EXECUTE ON FUNCTION billing_usage_page(text, uuid, int) FROM tenantd_worker;
