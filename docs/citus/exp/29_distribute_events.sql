SET citus.enable_unsafe_triggers = on;
SELECT create_distributed_table('events', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('audit_events', 'tenant_id', colocate_with => 'products');
