-- as tenantd_owner on the coordinator, database lab
\set ON_ERROR_STOP 0
SELECT current_user, current_database();
CREATE ROLE tenantd_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
GRANT USAGE ON SCHEMA public TO tenantd_app;
CREATE TABLE tenants (id uuid PRIMARY KEY, slug text NOT NULL);
CREATE TABLE products (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL, sku text NOT NULL,
    PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, sku));
ALTER TABLE products ENABLE ROW LEVEL SECURITY;
ALTER TABLE products FORCE ROW LEVEL SECURITY;
-- tenantd's exact form (0001):
CREATE POLICY tenant_isolation ON products
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
SELECT create_distributed_table('tenants', 'id');
-- distribute with the sub-select policy in place:
SELECT create_distributed_table('products', 'tenant_id', colocate_with => 'tenants');
DROP POLICY tenant_isolation ON products;
SELECT create_distributed_table('products', 'tenant_id', colocate_with => 'tenants');
-- create the sub-select policy after distribution:
CREATE POLICY tenant_isolation ON products
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
-- the same without the sub-select:
CREATE POLICY tenant_isolation ON products
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON products TO tenantd_app;
GRANT SELECT ON tenants TO tenantd_app;
INSERT INTO tenants VALUES ('00000000-0000-0000-0000-00000000000a','alpha'),('00000000-0000-0000-0000-00000000000b','beta');
