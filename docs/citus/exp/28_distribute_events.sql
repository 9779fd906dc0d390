SELECT create_distributed_table('events', 'tenant_id', colocate_with => 'products') FROM (SELECT set_config('citus.enable_unsafe_triggers', 'on', false)) s;
DROP INDEX events_position_key;
CREATE UNIQUE INDEX events_tenant_position_key ON events (tenant_id, position);
SELECT create_distributed_table('events', 'tenant_id', colocate_with => 'products');
SELECT create_distributed_table('audit_events', 'tenant_id', colocate_with => 'products');
