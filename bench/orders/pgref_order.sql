-- Copied unchanged below this header from shared/bench/pgref-order.sql
-- (/work/shared/bench/pgref-order.sql): the bare order placement SQL the
-- service is compared with, run by bench/orders with pgbench as role app
-- on the pgref database (pgref_schema.sql). CI copies shared/ read-only and
-- this bench must not depend on its path. Keep it in step with the
-- original by copying it again, not by editing it here. One change: the
-- tenant is bound by bench.app_bind_tenant (pgref_schema.sql), as the
-- service binds it (app_bind_tenant, migration 0024), not by set_config.

\set tid random(1, 100)
\set pid random(1, 100)
\set cid random(1, 100000)
BEGIN;
SELECT bench.app_bind_tenant(:tid);
UPDATE bench.products SET reserved = reserved + 2 WHERE tenant_id = :tid AND id = :pid AND stock - reserved >= 2;
INSERT INTO bench.orders(tenant_id, customer_id, status, total_cents) VALUES (:tid, :cid, 'pending', 2000) RETURNING id \gset
INSERT INTO bench.order_items VALUES (:tid, :id, :pid, 2, 1000);
INSERT INTO bench.outbox(tenant_id, topic, payload) VALUES (:tid, 'order.created', '{"order_id":1}');
COMMIT;
