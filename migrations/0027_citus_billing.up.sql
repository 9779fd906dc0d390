-- Billing's cross-tenant reads in a form Citus can plan (issue 14), with
-- the same results on plain PostgreSQL.
--
-- billing_live_lines (behind billing_export_rows and billing_close_period)
-- and billing_usage_page joined usage_counters and billing_lines (tables
-- distributed by tenant_id) to the tenants, to each other and to CTEs
-- through correlated LATERAL subqueries. Citus refuses both: "complex joins
-- are only supported when all distributed tables are co-located and
-- joined on their distribution columns", and "cannot perform a lateral
-- outer join when a distributed subquery references complex subqueries,
-- CTEs or local tables". Here every read of a distributed table is a
-- MATERIALIZED CTE that Citus can push down to the shards whole (it groups
-- by, or selects DISTINCT ON, tenant_id, and is filtered by a CTE read
-- before it); Citus plans each as an intermediate result, and the final
-- joins read only those results and the reference tables (tenants,
-- plan_meters). The LATERAL subqueries become the same aggregates keyed
-- by what they were correlated on, LEFT JOINed on that key:
--   * issued: the sums of the earlier periods' lines of one (tenant,
--     meter, meter currency, month) - as before, NULL (then 0) for a key
--     without lines;
--   * origin: the line of the month's own period that LIMIT 1 picked
--     (lowest meter currency, COLLATE "C"), by DISTINCT ON; unique, since
--     (tenant, period, meter, meter currency, usage period) is the key of
--     billing_lines;
--   * the usage of a page of tenants: grouped by tenant as well.
-- The two become PL/pgSQL (RETURN QUERY), as migration 0026 makes the
-- other SQL functions with parameters on Citus, which cannot plan
-- parameters of never-inlined SQL functions; column names take precedence
-- over the output parameters' names, as in SQL functions.
--
-- billing_close_period stores the lines with INSERT ... SELECT ...
-- RETURNING (see there) instead of a plain INSERT ... SELECT, which Citus
-- turns into a COPY that row-level security refuses.
--
-- Signatures, attributes, owner and grants stay (CREATE OR REPLACE).
--
-- One DO block, each statement its own EXECUTE: after 0026, Citus needs
-- one statement per message (citusdata/citus#6608).
DO $do$
BEGIN
    EXECUTE $f$
CREATE OR REPLACE FUNCTION billing_live_lines(p_period text)
RETURNS TABLE (tenant_id uuid, meter text, meter_currency text, usage_period text,
               tenant_slug text, plan text, quantity bigint, included bigint, billable bigint,
               unit_price bigint, unit_size bigint, amount bigint, currency text, hard_limit boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public
AS $body$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH counted AS MATERIALIZED (
        SELECT u.tenant_id, u.meter, u.currency AS meter_currency,
               to_char(u.hour AT TIME ZONE 'UTC', 'YYYY-MM') AS usage_period,
               (CASE WHEN billing_meter_is_gauge(u.meter) THEN max(u.quantity) ELSE sum(u.quantity) END)::bigint AS quantity
        FROM usage_counters u
        WHERE u.billing_period = p_period
        GROUP BY u.tenant_id, u.meter, u.currency, to_char(u.hour AT TIME ZONE 'UTC', 'YYYY-MM')
    ),
    billed_tenants AS MATERIALIZED (
        SELECT t.id, t.slug, t.plan
        FROM tenants t
        WHERE t.created_at < ((p_period || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC'
           OR t.id IN (SELECT c.tenant_id FROM counted c)
    ),
    -- The keys of late counts (counted in p_period, occurred in another month).
    late_keys AS MATERIALIZED (
        SELECT DISTINCT c.tenant_id, c.meter, c.meter_currency, c.usage_period
        FROM counted c
        WHERE c.usage_period <> p_period
    ),
    issued AS MATERIALIZED (
        SELECT l.tenant_id, l.meter, l.meter_currency, l.usage_period,
               sum(l.quantity)::bigint AS quantity, sum(l.billable)::bigint AS billable,
               sum(l.amount)::bigint AS amount
        FROM billing_lines l
        JOIN late_keys k ON k.tenant_id = l.tenant_id AND k.meter = l.meter
                        AND k.meter_currency = l.meter_currency AND k.usage_period = l.usage_period
        WHERE l.period < p_period
        GROUP BY l.tenant_id, l.meter, l.meter_currency, l.usage_period
    ),
    origin AS MATERIALIZED (
        SELECT DISTINCT ON (l.tenant_id, l.usage_period, l.meter)
               l.tenant_id, l.usage_period, l.meter,
               l.plan, l.included, l.unit_price, l.unit_size, l.currency, l.hard_limit
        FROM billing_lines l
        WHERE l.period = l.usage_period
          AND (l.tenant_id, l.usage_period, l.meter) IN (SELECT k.tenant_id, k.usage_period, k.meter FROM late_keys k)
        ORDER BY l.tenant_id, l.usage_period, l.meter, l.meter_currency COLLATE "C"
    ),
    usage_keys AS (
        SELECT bt.id AS tenant_id, pm.meter, '' AS meter_currency
        FROM billed_tenants bt JOIN plan_meters pm ON pm.plan = bt.plan
        WHERE NOT EXISTS (SELECT 1 FROM counted c
                          WHERE c.tenant_id = bt.id AND c.meter = pm.meter AND c.usage_period = p_period)
        UNION ALL
        SELECT c.tenant_id, c.meter, c.meter_currency FROM counted c WHERE c.usage_period = p_period
    ),
    usage_lines AS (
        SELECT k.tenant_id, k.meter, k.meter_currency, p_period AS usage_period,
               bt.slug, bt.plan, coalesce(c.quantity, 0) AS quantity,
               coalesce(pm.included, 0) AS included, coalesce(pm.unit_price, 0) AS unit_price,
               coalesce(pm.unit_size, 1) AS unit_size, coalesce(pm.currency, '') AS currency,
               coalesce(pm.hard_limit, false) AS hard_limit
        FROM usage_keys k
        JOIN billed_tenants bt ON bt.id = k.tenant_id
        LEFT JOIN counted c ON c.tenant_id = k.tenant_id AND c.meter = k.meter
                           AND c.meter_currency = k.meter_currency AND c.usage_period = p_period
        LEFT JOIN plan_meters pm ON pm.plan = bt.plan AND pm.meter = k.meter
    ),
    late AS (
        SELECT c.tenant_id, c.meter, c.meter_currency, c.usage_period, c.quantity AS late_quantity,
               bt.slug, coalesce(origin.plan, bt.plan) AS plan,
               coalesce(issued.quantity, 0) AS issued_quantity,
               coalesce(issued.billable, 0) AS issued_billable,
               coalesce(issued.amount, 0) AS issued_amount,
               coalesce(origin.included, pm.included, 0) AS included,
               coalesce(origin.unit_price, pm.unit_price, 0) AS unit_price,
               coalesce(origin.unit_size, pm.unit_size, 1) AS unit_size,
               coalesce(origin.currency, pm.currency, '') AS currency,
               coalesce(origin.hard_limit, pm.hard_limit, false) AS hard_limit
        FROM counted c
        JOIN billed_tenants bt ON bt.id = c.tenant_id
        LEFT JOIN issued ON issued.tenant_id = c.tenant_id AND issued.meter = c.meter
                        AND issued.meter_currency = c.meter_currency AND issued.usage_period = c.usage_period
        LEFT JOIN origin ON origin.tenant_id = c.tenant_id AND origin.usage_period = c.usage_period
                        AND origin.meter = c.meter
        LEFT JOIN plan_meters pm ON pm.plan = bt.plan AND pm.meter = c.meter
        WHERE c.usage_period <> p_period
    ),
    adjustment_lines AS (
        SELECT a.*, CASE WHEN billing_meter_is_gauge(a.meter)
                         THEN greatest(a.issued_quantity, a.late_quantity)
                         ELSE a.issued_quantity + a.late_quantity END AS total_quantity
        FROM late a
    )
    SELECT u.tenant_id, u.meter, u.meter_currency, u.usage_period, u.slug, u.plan, u.quantity,
           u.included, billing_billable(u.quantity, u.included, u.hard_limit),
           u.unit_price, u.unit_size,
           billing_amount(billing_billable(u.quantity, u.included, u.hard_limit), u.unit_price, u.unit_size),
           u.currency, u.hard_limit
    FROM usage_lines u
    UNION ALL
    SELECT a.tenant_id, a.meter, a.meter_currency, a.usage_period, a.slug, a.plan,
           a.total_quantity - a.issued_quantity,
           a.included,
           billing_billable(a.total_quantity, a.included, a.hard_limit) - a.issued_billable,
           a.unit_price, a.unit_size,
           billing_amount(billing_billable(a.total_quantity, a.included, a.hard_limit), a.unit_price, a.unit_size)
               - a.issued_amount,
           a.currency, a.hard_limit
    FROM adjustment_lines a;
END
$body$
$f$;

    EXECUTE $f$
CREATE OR REPLACE FUNCTION billing_usage_page(p_period text, p_after uuid, p_limit int)
RETURNS TABLE (tenant_id uuid, tenant_slug text, plan text, meter text, meter_currency text, used bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $body$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH page AS MATERIALIZED (
        SELECT t.id, t.slug, t.plan FROM tenants t
        WHERE (p_after IS NULL OR t.id > p_after) AND app_scope_admits(t.id)
        ORDER BY t.id
        LIMIT least(greatest(p_limit, 0), 1000)
    ),
    page_usage AS MATERIALIZED (
        SELECT c.tenant_id, c.meter, c.currency,
               (CASE WHEN billing_meter_is_gauge(c.meter) THEN max(c.quantity) ELSE sum(c.quantity) END)::bigint AS used
        FROM usage_counters c
        WHERE c.billing_period = p_period AND c.tenant_id IN (SELECT p.id FROM page p)
        GROUP BY c.tenant_id, c.meter, c.currency
    )
    SELECT p.id, p.slug, p.plan, u.meter, u.currency, u.used
    FROM page p
    LEFT JOIN page_usage u ON u.tenant_id = p.id
    ORDER BY p.id, u.meter COLLATE "C", u.currency COLLATE "C";
END
$body$
$f$;

    EXECUTE $f$
CREATE OR REPLACE FUNCTION billing_close_period(p_period text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $body$
DECLARE
    v_frozen int;
BEGIN
    IF nullif(current_setting('app.tenant_id', true), '') IS NOT NULL
       OR coalesce(current_setting('app.platform', true), '') = 'on' THEN
        RAISE EXCEPTION 'billing_close_period closes a period for every tenant: not in a tenant''s or the platform''s transaction'
            USING ERRCODE = '42501';
    END IF;
    IF p_period IS NULL OR p_period !~ '^[0-9]{4}-(0[1-9]|1[0-2])$' THEN
        RAISE EXCEPTION 'billing period % is not YYYY-MM', p_period USING ERRCODE = '22023';
    END IF;
    IF statement_timestamp() < ((p_period || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC' THEN
        RETURN 'open';
    END IF;
    IF EXISTS (SELECT 1 FROM billing_periods WHERE period = p_period AND lines_frozen_at IS NOT NULL) THEN
        RETURN 'final';
    END IF;
    LOCK TABLE usage_counters IN SHARE MODE;
    INSERT INTO billing_periods (period) VALUES (p_period) ON CONFLICT (period) DO NOTHING;
    UPDATE billing_periods SET lines_frozen_at = statement_timestamp()
    WHERE period = p_period AND lines_frozen_at IS NULL;
    GET DIAGNOSTICS v_frozen = ROW_COUNT;
    IF v_frozen = 0 THEN
        RETURN 'final'; -- closed concurrently
    END IF;
    -- RETURNING, its rows discarded (EXECUTE without INTO): Citus then
    -- writes the lines through intermediate results and an INSERT on each
    -- shard; a plain INSERT ... SELECT it cannot push down is a COPY into
    -- the shards, which it refuses on tables with row-level security.
    EXECUTE 'INSERT INTO billing_lines (tenant_id, period, meter, meter_currency, usage_period, tenant_slug, plan,
                               quantity, included, billable, unit_price, unit_size, amount, currency, hard_limit)
    SELECT l.tenant_id, $1, l.meter, l.meter_currency, l.usage_period, l.tenant_slug, l.plan,
           l.quantity, l.included, l.billable, l.unit_price, l.unit_size, l.amount, l.currency, l.hard_limit
    FROM billing_live_lines($1) l
    RETURNING 1' USING p_period;
    RETURN 'closed';
END
$body$
$f$;
END
$do$;
