-- pgbench script: one order placement, the statements tenantd sends for
-- POST /v1/orders (orders.Service.Place: inventory.Reserve, events.Append,
-- the order_views projection, then the request's audit entry) in their
-- order, in one transaction, as the runtime role tenantd_app under
-- row-level security. Run by bench/orders with -M prepared (pgx prepares
-- and caches the service's statements) and -D targets=<rows of
-- bench_targets>. bench/orders refuses to run when the statements of a
-- placement it traces differ from these (compared by their beginnings);
-- `go run ./bench/orders -trace` shows what the service sends.
--
-- What the service computes in Go before or between its statements (ids,
-- the events' JSON, the order's total) comes from the one statement that
-- sets the tenant: it reads the tenant, two of its products and their prices
-- from bench_targets (written by bench/orders), draws time-ordered ids as
-- uuid.NewV7 does, builds the JSON and hands it all back with \gset. That
-- costs the server a little more than the service's set_config alone, and
-- no round trip more. Everything else is the service's statement, with its
-- parameters; constants the service also sends as parameters ('held', the
-- event types, the lock classes, the NOTIFY channel, the audit entry's
-- action and summary) are literals here.

\set n random(1, :targets)
\set items random(1, 2)
\set qty 1

BEGIN;

-- db.WithTenant: SELECT set_config('app.tenant_id', $1, true)
SELECT set_config('app.tenant_id', t.tenant_id::text, true) AS tenant_id,
       t.a_id, t.b_id, i.order_id, i.res_a, i.res_b, i.ev_placed, i.ev_reserved,
       'order-' || i.order_id AS stream_id,
       t.tenant_id || '/order-' || i.order_id AS lock_key,
       i.expires_at, i.created_at,
       'cust-' || :client_id::text AS customer_id,
       j.items::text AS items_json, j.total, t.currency,
       jsonb_build_object('order_id', i.order_id, 'customer_id', 'cust-' || :client_id::text, 'items', j.items,
                          'total', j.total, 'currency', t.currency,
                          'reservation_expires_at', i.expires_at)::text AS placed_json,
       jsonb_build_object('order_id', i.order_id, 'reservations', j.reservations)::text AS reserved_json,
       jsonb_build_object('actor', 'api_key:' || t.tenant_id, 'request_id', i.request_id,
                          'correlation_id', i.ev_placed)::text AS meta_json,
       'api_key:' || t.tenant_id AS actor, i.request_id, i.audit_id
FROM bench_targets t
CROSS JOIN LATERAL (
    SELECT bench_uuid7() AS order_id, bench_uuid7() AS res_a, bench_uuid7() AS res_b,
           bench_uuid7() AS ev_placed, bench_uuid7() AS ev_reserved, bench_uuid7() AS request_id,
           bench_uuid7() AS audit_id,
           date_trunc('microseconds', now() + interval '15 minutes') AS expires_at, now() AS created_at
) i
CROSS JOIN LATERAL (
    SELECT CASE WHEN :items = 2 THEN jsonb_build_array(x.item_a, x.item_b) ELSE jsonb_build_array(x.item_a) END AS items,
           CASE WHEN :items = 2 THEN jsonb_build_array(x.res_a, x.res_b) ELSE jsonb_build_array(x.res_a) END AS reservations,
           t.a_price + CASE WHEN :items = 2 THEN t.b_price ELSE 0 END AS total
    FROM (SELECT jsonb_build_object('product_id', t.a_id, 'sku', t.a_sku, 'quantity', 1,
                                    'unit_price', t.a_price, 'amount', t.a_price) AS item_a,
                 jsonb_build_object('product_id', t.b_id, 'sku', t.b_sku, 'quantity', 1,
                                    'unit_price', t.b_price, 'amount', t.b_price) AS item_b,
                 jsonb_build_object('reservation_id', i.res_a, 'product_id', t.a_id, 'quantity', 1) AS res_a,
                 jsonb_build_object('reservation_id', i.res_b, 'product_id', t.b_id, 'quantity', 1) AS res_b) x
) j
WHERE t.n = :n \gset

-- inventory.Reserve, for each line in product-id order: the guarded
-- UPDATE, then the reservation.
UPDATE products SET stock_reserved = stock_reserved + :qty, version = version + 1, updated_at = now()
    WHERE tenant_id = :tenant_id AND id = :a_id AND stock_on_hand - stock_reserved >= :qty
    RETURNING tenant_id, id, sku, name, price, currency, stock_on_hand, stock_reserved, version, created_at, updated_at;
INSERT INTO "reservations" ("tenant_id","id","order_id","product_id","quantity","status","expires_at")
    VALUES (:tenant_id, :res_a, :order_id, :a_id, :qty, 'held', :expires_at);
\if :items = 2
UPDATE products SET stock_reserved = stock_reserved + :qty, version = version + 1, updated_at = now()
    WHERE tenant_id = :tenant_id AND id = :b_id AND stock_on_hand - stock_reserved >= :qty
    RETURNING tenant_id, id, sku, name, price, currency, stock_on_hand, stock_reserved, version, created_at, updated_at;
INSERT INTO "reservations" ("tenant_id","id","order_id","product_id","quantity","status","expires_at")
    VALUES (:tenant_id, :res_b, :order_id, :b_id, :qty, 'held', :expires_at);
\endif

-- events.Append: lock the stream, check its version, insert order.placed
-- and stock.reserved, notify the dispatchers at commit.
SELECT pg_advisory_xact_lock(1702232065, hashtext(:lock_key));
SELECT coalesce(max(version), 0) FROM events WHERE tenant_id = :tenant_id AND stream_id = :stream_id;
INSERT INTO events (tenant_id, id, stream_id, version, type, data, metadata)
    VALUES (:tenant_id, :ev_placed, :stream_id, 1, 'order.placed', :placed_json::jsonb, :meta_json::jsonb),
           (:tenant_id, :ev_reserved, :stream_id, 2, 'stock.reserved', :reserved_json::jsonb, :meta_json::jsonb)
    RETURNING id, position, created_at;
SELECT pg_notify('tenantd_events', '');

-- orders.project: the read model.
INSERT INTO "order_views" ("tenant_id","id","customer_id","status","items","total","currency","cancellation_reason","payment_id","reservation_expires_at","version","created_at","updated_at")
    VALUES (:tenant_id, :order_id, :customer_id, 'pending', :items_json, :total, :currency, NULL, NULL, :expires_at, 2, :created_at, :created_at)
    ON CONFLICT ("tenant_id","id") DO UPDATE SET "status"="excluded"."status","cancellation_reason"="excluded"."cancellation_reason","payment_id"="excluded"."payment_id","version"="excluded"."version","updated_at"="excluded"."updated_at";

-- audit.Auditor.BeforeCommit: the transaction wrote, so it carries the
-- request's entry, appended to the tenant's hash chain under the tenant's
-- audit lock. The service hashes in Go; sha256() here stands in for it.
-- Every tenant's chain has a head: creating the tenant recorded its admin key.
SELECT pg_current_xact_id_if_assigned() IS NOT NULL;
SELECT pg_advisory_xact_lock(1635057665, hashtext(:tenant_id));
SELECT seq, hash FROM audit_events WHERE tenant_id = :tenant_id ORDER BY seq DESC LIMIT 1 \gset audit_
\set audit_next :audit_seq + 1
INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor, action, resource, status,
        summary, request_id, ip, user_agent, prev_hash, hash)
    VALUES (:tenant_id, :audit_next, :audit_id, :created_at, :actor, 'POST /v1/orders', '/v1/orders', 0,
        '{"phase": "commit", "fields": ["customer_id", "items"]}'::jsonb, :request_id, nullif('127.0.0.1', '')::inet,
        'pgbench', :audit_hash::bytea, sha256(:audit_hash::bytea || convert_to(:audit_id, 'UTF8')));

COMMIT;
