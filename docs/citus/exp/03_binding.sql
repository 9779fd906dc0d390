\set A '00000000-0000-0000-0000-000000000001'
\set B '00000000-0000-0000-0000-000000000002'
SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user;
SET citus.log_remote_commands = on;
SET citus.grep_remote_commands = '%products%';
-- (1) tenantd's binding today: set_config(..., true)
BEGIN;
SELECT set_config('app.tenant_id', :'A', true);
SELECT tenant_id, sku FROM products ORDER BY sku;                          -- multi-shard
SELECT tenant_id, sku FROM products WHERE tenant_id = :'A' ORDER BY sku;  -- router
COMMIT;
-- (2) set_config with propagate_set_commands = local: still not propagated (it is a function, not a SET)
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SELECT set_config('app.tenant_id', :'A', true);
SELECT count(*) FROM products WHERE tenant_id = :'A';
COMMIT;
-- (3) SET LOCAL with propagate_set_commands = local
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL app.tenant_id = :'A';
SELECT tenant_id, sku FROM products ORDER BY sku;                          -- multi-shard, both workers
SELECT tenant_id, sku FROM products WHERE tenant_id = :'A' ORDER BY sku;  -- router
SELECT tenant_id, sku FROM products WHERE tenant_id = :'B' ORDER BY sku;  -- B's shard: 0 rows
COMMIT;
