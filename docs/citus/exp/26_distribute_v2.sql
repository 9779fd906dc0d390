-- second attempt, after 0020 (as tenantd_owner); the reference tables are already done
SELECT create_reference_table('api_keys');
SELECT create_distributed_table('products', 'tenant_id');
SELECT create_distributed_table('members', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('dead_letters', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('idempotency_keys', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('reservations', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('order_views', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('payments', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('refunds', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('usage_counters', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('billing_lines', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('events', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('audit_events', 'tenant_id', colocate_with => 'products');
