-- Citus only: distribute tenant tables by tenant_id (co-located with
-- products), make platform tables reference tables. A no-op on plain
-- PostgreSQL. One DO block: each statement runs as its own EXECUTE, because
-- Citus forwards DDL on distributed tables with the original query string,
-- and a multi-statement migration string fails on the workers with "cannot
-- insert multiple commands into a prepared statement" (citusdata/citus#6608).
DO $$
DECLARE
    t text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;

    -- db.WithTenant/WithPlatform bind with SET LOCAL (app_bind_tenant,
    -- app_bind_platform); Citus forwards SET LOCAL to the workers only with
    -- this setting, for every role that connects (tenantd_app, tenantd_worker).
    EXECUTE format('ALTER DATABASE %I SET citus.propagate_set_commands = %L', current_database(), 'local');
    PERFORM set_config('citus.propagate_set_commands', 'local', true);

    -- Unique keys must contain tenant_id. events.position is unique per
    -- tenant (a global position does not exist on Citus: see docs/scaling.md).
    DROP INDEX events_position_key;
    CREATE UNIQUE INDEX events_tenant_position_key ON events (tenant_id, position);

    -- Foreign keys between two tenant tables: dropped while both are Citus
    -- local tables (converted when tenants becomes a reference table), put
    -- back once both are co-located.
    ALTER TABLE reservations DROP CONSTRAINT reservations_tenant_id_product_id_fkey;
    ALTER TABLE refunds DROP CONSTRAINT refunds_tenant_id_payment_id_fkey;

    -- Platform data, the same on every node. api_keys is looked up by its
    -- globally unique prefix before the tenant is known: a reference table
    -- keeps UNIQUE (prefix) and reads it on the coordinator, without a fan-out.
    FOREACH t IN ARRAY ARRAY['plans', 'plan_meters', 'tenants', 'api_keys', 'casbin_rule',
        'event_checkpoints', 'usage_flushes', 'billing_periods', 'billing_exports',
        'sim_gateway_charges', 'sim_gateway_refunds'] LOOP
        PERFORM create_reference_table(t::regclass);
    END LOOP;

    -- Citus locks the referenced reference table (plans) on the first worker
    -- before a write to tenants, and checks that the writer may modify it:
    -- tenantd_app gets INSERT, and row-level security admits it no row.
    ALTER TABLE plans ENABLE ROW LEVEL SECURITY;
    CREATE POLICY catalogue_read ON plans FOR SELECT USING (true);
    GRANT INSERT ON plans TO tenantd_app;

    -- Tenant tables. events and audit_events keep their triggers (they run on
    -- the worker that holds the shard).
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    PERFORM create_distributed_table('products', 'tenant_id');
    FOREACH t IN ARRAY ARRAY['members', 'dead_letters', 'idempotency_keys', 'reservations',
        'order_views', 'payments', 'refunds', 'usage_counters', 'billing_lines',
        'events', 'audit_events'] LOOP
        PERFORM create_distributed_table(t::regclass, 'tenant_id', colocate_with => 'products');
    END LOOP;

    ALTER TABLE reservations ADD CONSTRAINT reservations_tenant_id_product_id_fkey
        FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id);
    ALTER TABLE refunds ADD CONSTRAINT refunds_tenant_id_payment_id_fkey
        FOREIGN KEY (tenant_id, payment_id) REFERENCES payments (tenant_id, id) ON DELETE CASCADE;
END
$$;
