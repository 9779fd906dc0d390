\set A '00000000-0000-0000-0000-000000000001'
\set B '00000000-0000-0000-0000-000000000002'
SET citus.log_remote_commands = on;
SET citus.grep_remote_commands = '%app.tenant_id%';
-- no tenant bound: 0 rows on both workers
SELECT count(*) AS no_tenant_rows FROM products;
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL app.tenant_id = :'A';
SELECT tenant_id, count(*) FROM products GROUP BY 1;   -- fan-out to both workers
-- write for another tenant, routed to B's shard on worker 9702: WITH CHECK fails there
INSERT INTO products VALUES (:'B', gen_random_uuid(), 'smuggled');
ROLLBACK;
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL app.tenant_id = :'A';
UPDATE products SET tenant_id = :'B' WHERE tenant_id = :'A';  -- cannot move rows across tenants
ROLLBACK;
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL app.tenant_id = :'B';
SELECT tenant_id, count(*) FROM products GROUP BY 1;
UPDATE products SET sku = sku WHERE tenant_id = :'A';   -- A's rows invisible: UPDATE 0
DELETE FROM products WHERE tenant_id = :'A';            -- DELETE 0
COMMIT;
-- after COMMIT the cached worker connections carry no binding
SELECT count(*) AS after_commit_rows FROM products;
-- the runtime role cannot turn RLS off
SET row_security = off;
SELECT count(*) FROM products;
RESET row_security;
-- nor can it reach the shards directly on a worker
\c - - 127.0.0.1 9702
SET citus.show_shards_for_app_name_prefixes = '*';
SELECT count(*) FROM products;
SELECT count(*) FROM products_102069;
BEGIN; SET LOCAL app.tenant_id = :'B'; SELECT count(*) AS direct_shard_b FROM products_102069; COMMIT;
ALTER TABLE products_102069 DISABLE ROW LEVEL SECURITY;
ALTER ROLE tenantd_app BYPASSRLS;
