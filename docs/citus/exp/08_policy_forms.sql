-- as tenantd_owner: other policy forms on a distributed table
CREATE FUNCTION current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;
CREATE TABLE notes (tenant_id uuid NOT NULL, id int NOT NULL, body text, PRIMARY KEY (tenant_id, id));
SELECT create_distributed_table('notes', 'tenant_id', colocate_with => 'products');
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
-- (a) function-wrapped form
CREATE POLICY tenant_isolation ON notes USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
-- (b) platform form used by tenants table, without the sub-select
CREATE POLICY platform_operator ON notes USING (current_setting('app.platform', true) = 'on') WITH CHECK (current_setting('app.platform', true) = 'on');
-- (c) owner_lookup form
CREATE POLICY owner_lookup ON notes FOR SELECT TO CURRENT_USER USING (true);
GRANT SELECT, INSERT ON notes TO tenantd_app;
