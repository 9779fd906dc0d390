-- pgbench script: one order placement, the statements tenantd sends for
-- POST /v1/orders (orders.Service.Place: inventory.Reserve, events.Append,
-- the order_views projection, then the request's audit entry) in their
-- order, in one transaction, as the runtime role tenantd_app under
-- row-level security. Run by bench/orders with -M prepared (pgx prepares
-- and caches the service's statements) and -D targets=<rows of
-- bench_targets>. bench/orders refuses to run when the statements of a
-- placement it traces differ from these (compared by their beginnings);
-- `go run ./bench/orders -trace` shows what the service sends. A two-item
-- order takes the \if branches and a one-item order the \else ones; both
-- paths are compared with the traced (two-item) placement.
--
-- What the service computes in Go before its transaction (ids, the
-- events' JSON, the order's total) comes from one statement before BEGIN:
-- it reads the tenant, two of its products and their prices from
-- bench_targets (written by bench/orders), draws time-ordered ids as
-- uuid.NewV7 does, builds the JSON and hands it all back with \gset. It is
-- a round trip the service does not make (pgbench cannot \gset in a
-- pipeline, nor prepare BEGIN together with a SELECT); -statements shows
-- what it costs. Only the statements from BEGIN to COMMIT are compared with
-- the service's, a pipeline counting as one round trip as the service's
-- "BEGIN; SELECT app_bind_tenant(...)" does. Everything in the transaction is
-- the service's statement, with its parameters; constants the service
-- sends as parameters (the events' types and versions, the audit entry's
-- action, resource, status and summary) are literals here, and the tenant,
-- which the service writes into its one simple-protocol BEGIN message, is a
-- parameter.
--
-- The NOTIFY is no statement of its own: the events_notify trigger sends it
-- for both sides. Not in the script, because the service does it after
-- commit, off the request: the event dispatcher's deliveries and the audit
-- sealer's hash chaining. bench/orders counts the time they take after the
-- service's last response as the service's, and lets the next tenantd seal
-- pgbench's audit rows before it is timed.

\set n random(1, :targets)
\set items random(1, 2)
\set qty 1

-- What the service knows before its transaction.
SELECT t.tenant_id,
       t.a_id, t.b_id, i.order_id, i.res_a, i.res_b, i.ev_placed, i.ev_reserved,
       'order-' || i.order_id AS stream_id,
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

-- db.WithTenant: BEGIN and the tenant in one round trip.
\startpipeline
BEGIN;
SELECT app_bind_tenant(:tenant_id);
\endpipeline

-- inventory.Reserve: every line in one statement, products locked in id
-- order, each line guarded by the UPDATE, the reservations inserted from
-- what the UPDATE returned.
\if :items = 2
WITH want (reservation_id, product_id, quantity) AS (VALUES (:res_a::uuid, :a_id::uuid, :qty::bigint), (:res_b::uuid, :b_id::uuid, :qty::bigint)),
    locked AS MATERIALIZED (
        SELECT p.id FROM products p
        WHERE p.tenant_id = :tenant_id AND p.id IN (SELECT product_id FROM want)
        ORDER BY p.id FOR UPDATE),
    held AS (
        UPDATE products p SET stock_reserved = p.stock_reserved + w.quantity, version = p.version + 1, updated_at = now()
        FROM want w, locked l
        WHERE p.tenant_id = :tenant_id AND p.id = l.id AND w.product_id = l.id AND p.stock_on_hand - p.stock_reserved >= w.quantity
        RETURNING p.id, p.sku, p.price, p.currency, w.reservation_id, w.quantity),
    ins AS (
        INSERT INTO reservations (tenant_id, id, order_id, product_id, quantity, status, expires_at)
        SELECT :tenant_id, h.reservation_id, :order_id, h.id, h.quantity, 'held', :expires_at FROM held h)
    SELECT w.product_id, l.id IS NOT NULL AS found, h.reservation_id, h.sku, h.price, h.currency
    FROM want w LEFT JOIN locked l ON l.id = w.product_id LEFT JOIN held h ON h.id = w.product_id
    ORDER BY w.product_id;
\else
WITH want (reservation_id, product_id, quantity) AS (VALUES (:res_a::uuid, :a_id::uuid, :qty::bigint)),
    locked AS MATERIALIZED (
        SELECT p.id FROM products p
        WHERE p.tenant_id = :tenant_id AND p.id IN (SELECT product_id FROM want)
        ORDER BY p.id FOR UPDATE),
    held AS (
        UPDATE products p SET stock_reserved = p.stock_reserved + w.quantity, version = p.version + 1, updated_at = now()
        FROM want w, locked l
        WHERE p.tenant_id = :tenant_id AND p.id = l.id AND w.product_id = l.id AND p.stock_on_hand - p.stock_reserved >= w.quantity
        RETURNING p.id, p.sku, p.price, p.currency, w.reservation_id, w.quantity),
    ins AS (
        INSERT INTO reservations (tenant_id, id, order_id, product_id, quantity, status, expires_at)
        SELECT :tenant_id, h.reservation_id, :order_id, h.id, h.quantity, 'held', :expires_at FROM held h)
    SELECT w.product_id, l.id IS NOT NULL AS found, h.reservation_id, h.sku, h.price, h.currency
    FROM want w LEFT JOIN locked l ON l.id = w.product_id LEFT JOIN held h ON h.id = w.product_id
    ORDER BY w.product_id;
\endif

-- events.Append of a new stream: no lock and no version read; the insert
-- itself checks that the stream has no event yet. The events_notify
-- trigger notifies the dispatchers once, at commit.
INSERT INTO events (tenant_id, id, stream_id, version, type, data, metadata) SELECT * FROM (VALUES
    (:tenant_id::uuid, :ev_placed::uuid, :stream_id::text, 1::bigint, 'order.placed'::text, :placed_json::jsonb, :meta_json::jsonb),
    (:tenant_id::uuid, :ev_reserved::uuid, :stream_id::text, 2::bigint, 'stock.reserved'::text, :reserved_json::jsonb, :meta_json::jsonb)) AS v
    WHERE NOT EXISTS (SELECT 1 FROM events WHERE tenant_id = :tenant_id AND stream_id = :stream_id)
    RETURNING id, position, created_at;

-- orders.project: the read model.
INSERT INTO "order_views" ("tenant_id","id","customer_id","status","items","total","currency","cancellation_reason","payment_id","reservation_expires_at","version","created_at","updated_at")
    VALUES (:tenant_id, :order_id, :customer_id, 'pending', :items_json, :total, :currency, NULL, NULL, :expires_at, 2, :created_at, :created_at)
    ON CONFLICT ("tenant_id","id") DO UPDATE SET "status"="excluded"."status","cancellation_reason"="excluded"."cancellation_reason","payment_id"="excluded"."payment_id","version"="excluded"."version","updated_at"="excluded"."updated_at";

-- audit.Auditor.BeforeCommit: the request's entry, unsealed (no lock, no
-- chain head), in the same statement as the check that the transaction
-- wrote. Its trigger gives it a position under the shared append lock;
-- the sealer links it into the tenant's hash chain after commit.
INSERT INTO audit_events (tenant_id, id, occurred_at, actor, action, resource, status, summary, request_id, ip, user_agent)
    SELECT :tenant_id::uuid, :audit_id::uuid, :created_at::timestamptz, :actor::text, 'POST /v1/orders'::text, '/v1/orders'::text, 0::int,
           '{"phase": "commit", "fields": ["customer_id", "items"]}'::jsonb, :request_id::text,
           nullif('127.0.0.1'::text, '')::inet, 'pgbench'::text
    WHERE pg_current_xact_id_if_assigned() IS NOT NULL;

COMMIT;
