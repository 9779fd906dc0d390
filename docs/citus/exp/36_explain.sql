\set A '00000000-0000-0000-0000-000000000001'
\set P1 'dced4466-9e4c-46d3-a782-8ed8b4b3ded8'
\set P2 '4237c250-591a-4657-91cc-ecd52f3d3e14'
BEGIN;
SELECT app_bind_tenant(:'A');
-- 1. product read with the tenant in WHERE: router (1 task)
EXPLAIN (COSTS OFF) SELECT * FROM products WHERE tenant_id = :'A' AND id = :'P1';
-- 1b. the same read relying on RLS alone (as orders.getView does: WHERE id = ?): 32 tasks
EXPLAIN (COSTS OFF) SELECT * FROM order_views WHERE id = :'P1';
-- 2. INSERT ... ON CONFLICT (orders.project)
EXPLAIN (COSTS OFF) INSERT INTO order_views (tenant_id, id, customer_id, status, items, total, currency, reservation_expires_at, version, created_at, updated_at)
  VALUES (:'A', gen_random_uuid(), 'c1', 'pending', '[]', 100, 'EUR', now() + interval '15 minutes', 1, now(), now())
  ON CONFLICT (tenant_id, id) DO UPDATE SET status = excluded.status, version = excluded.version, updated_at = excluded.updated_at;
-- 3. inventory.Reserve: FOR UPDATE in a MATERIALIZED CTE, UPDATE ... FROM, INSERT ... SELECT, in one statement
EXPLAIN (COSTS OFF)
WITH want (reservation_id, product_id, quantity) AS (VALUES (gen_random_uuid(), :'P1'::uuid, 1::bigint), (gen_random_uuid(), :'P2'::uuid, 2::bigint)),
  locked AS MATERIALIZED (
    SELECT p.id FROM products p
    WHERE p.tenant_id = :'A' AND p.id IN (SELECT product_id FROM want)
    ORDER BY p.id FOR UPDATE),
  held AS (
    UPDATE products p SET stock_reserved = p.stock_reserved + w.quantity, version = p.version + 1, updated_at = now()
    FROM want w, locked l
    WHERE p.tenant_id = :'A' AND p.id = l.id AND w.product_id = l.id AND p.stock_on_hand - p.stock_reserved >= w.quantity
    RETURNING p.id, p.sku, p.price, p.currency, w.reservation_id, w.quantity),
  ins AS (
    INSERT INTO reservations (tenant_id, id, order_id, product_id, quantity, status, expires_at)
    SELECT :'A', h.reservation_id, gen_random_uuid(), h.id, h.quantity, 'held', now() + interval '15 minutes' FROM held h)
SELECT w.product_id, l.id IS NOT NULL AS found, h.reservation_id, h.sku, h.price, h.currency
FROM want w LEFT JOIN locked l ON l.id = w.product_id LEFT JOIN held h ON h.id = w.product_id
ORDER BY w.product_id;
-- 4. event feed of one tenant
EXPLAIN (COSTS OFF) SELECT * FROM events WHERE tenant_id = :'A' AND position > 0 ORDER BY position LIMIT 100;
ROLLBACK;
