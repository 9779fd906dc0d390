DROP FUNCTION IF EXISTS tenant_erase_rows(regclass);
DROP TRIGGER IF EXISTS tenants_refuse_tombstoned ON tenants;
DROP FUNCTION IF EXISTS tenants_refuse_tombstoned();
DROP TABLE IF EXISTS tenant_tombstones;
DROP FUNCTION IF EXISTS tenant_exports_due(timestamptz, int);
DROP TABLE IF EXISTS tenant_exports;
