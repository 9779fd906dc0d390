\set A '00000000-0000-0000-0000-000000000001'
BEGIN;
SELECT app_bind_tenant(:'A');
PREPARE reserve(uuid, uuid, bigint, uuid, uuid, bigint, uuid, uuid, uuid, uuid, timestamptz) AS
WITH want (reservation_id, product_id, quantity) AS (VALUES ($1::uuid, $2::uuid, $3::bigint), ($4::uuid, $5::uuid, $6::bigint)),
  locked AS MATERIALIZED (
    SELECT p.id FROM products p
    WHERE p.tenant_id = $7 AND p.id IN (SELECT product_id FROM want)
    ORDER BY p.id FOR UPDATE),
  held AS (
    UPDATE products p SET stock_reserved = p.stock_reserved + w.quantity, version = p.version + 1, updated_at = now()
    FROM want w, locked l
    WHERE p.tenant_id = $8 AND p.id = l.id AND w.product_id = l.id AND p.stock_on_hand - p.stock_reserved >= w.quantity
    RETURNING p.id, p.sku, p.price, p.currency, w.reservation_id, w.quantity),
  ins AS (
    INSERT INTO reservations (tenant_id, id, order_id, product_id, quantity, status, expires_at)
    SELECT $9, h.reservation_id, $10, h.id, h.quantity, 'held', $11 FROM held h)
SELECT w.product_id, l.id IS NOT NULL AS found, h.reservation_id, h.sku, h.price, h.currency
FROM want w LEFT JOIN locked l ON l.id = w.product_id LEFT JOIN held h ON h.id = w.product_id
ORDER BY w.product_id;
EXPLAIN (COSTS OFF) EXECUTE reserve(gen_random_uuid(), 'dced4466-9e4c-46d3-a782-8ed8b4b3ded8', 1, gen_random_uuid(), '4237c250-591a-4657-91cc-ecd52f3d3e14', 2, :'A', :'A', :'A', gen_random_uuid(), now() + interval '15 minutes');
EXECUTE reserve('11111111-1111-1111-1111-111111111111', 'dced4466-9e4c-46d3-a782-8ed8b4b3ded8', 1, '22222222-2222-2222-2222-222222222222', '4237c250-591a-4657-91cc-ecd52f3d3e14', 2, :'A', :'A', :'A', '33333333-3333-3333-3333-333333333333', now() + interval '15 minutes');
SELECT product_id, quantity, status FROM reservations WHERE tenant_id = :'A';
ROLLBACK;
