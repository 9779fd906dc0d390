-- Copied unchanged below this header from shared/bench/pgref-schema.sql
-- (/work/shared/bench/pgref-schema.sql), the reference schema of the order
-- placement target: CI copies shared/ read-only and this bench must not
-- depend on its path. bench/orders loads it as the superuser into a
-- database of its own (pgref) in the throw-away cluster. Keep it in step
-- with the original by copying it again, not by editing it here. One
-- addition, at the end: bench.app_bind_tenant, the tenant binding of
-- tenantd's migration 0024 (SET LOCAL in a PL/pgSQL function) for this
-- schema's int tenant ids, which pgref_order.sql calls instead of
-- set_config, as the service does (issue 14).

DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname='app') THEN CREATE ROLE app LOGIN; END IF; END $$;
SET search_path=bench;
CREATE TABLE products(tenant_id int not null, id bigint not null, stock int not null, reserved int not null default 0, price_cents int not null, primary key(tenant_id,id));
CREATE TABLE orders(tenant_id int not null, id bigserial, customer_id bigint, status text, total_cents bigint, created_at timestamptz default now(), primary key(tenant_id,id));
CREATE TABLE order_items(tenant_id int not null, order_id bigint, product_id bigint, qty int, price_cents int);
CREATE TABLE outbox(id bigserial primary key, tenant_id int not null, topic text, payload jsonb, created_at timestamptz default now());
INSERT INTO products SELECT t, p, 1000000000, 0, 1000 FROM generate_series(1,100) t, generate_series(1,100) p;
DO $$ DECLARE t text; BEGIN FOREACH t IN ARRAY ARRAY['products','orders','order_items','outbox'] LOOP
 EXECUTE format('ALTER TABLE bench.%I ENABLE ROW LEVEL SECURITY', t);
 EXECUTE format('ALTER TABLE bench.%I FORCE ROW LEVEL SECURITY', t);
 EXECUTE format('CREATE POLICY iso ON bench.%I USING (tenant_id = (select current_setting(''app.tenant_id'')::int)) WITH CHECK (tenant_id = (select current_setting(''app.tenant_id'')::int))', t);
END LOOP; END $$;
GRANT USAGE ON SCHEMA bench TO app; GRANT ALL ON ALL TABLES IN SCHEMA bench TO app; GRANT ALL ON ALL SEQUENCES IN SCHEMA bench TO app;
CREATE FUNCTION bench.app_bind_tenant(p_tenant int) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_tenant IS NULL THEN RAISE EXCEPTION 'app_bind_tenant: no tenant' USING ERRCODE = '22004'; END IF;
    EXECUTE format('SET LOCAL app.tenant_id = %L', p_tenant::text);
END $$;
