-- Back to 0009's billing_live_lines, and 0018's billing_usage_page and
-- billing_close_period. The first two in LANGUAGE sql on plain PostgreSQL,
-- and on Citus in the PL/pgSQL form migration 0026 gave them (RETURN QUERY
-- of the same query, column names first). One DO block, each statement its
-- own EXECUTE (citusdata/citus#6608).
DO $do$
DECLARE
    citus boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus');
    live_lines text := $q$
    WITH counted AS (
        SELECT u.tenant_id, u.meter, u.currency AS meter_currency,
               to_char(u.hour AT TIME ZONE 'UTC', 'YYYY-MM') AS usage_period,
               (CASE WHEN billing_meter_is_gauge(u.meter) THEN max(u.quantity) ELSE sum(u.quantity) END)::bigint AS quantity
        FROM usage_counters u
        WHERE u.billing_period = p_period
        GROUP BY u.tenant_id, u.meter, u.currency, to_char(u.hour AT TIME ZONE 'UTC', 'YYYY-MM')
    ),
    billed_tenants AS (
        SELECT t.id, t.slug, t.plan
        FROM tenants t
        WHERE t.created_at < ((p_period || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC'
           OR t.id IN (SELECT c.tenant_id FROM counted c)
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
        LEFT JOIN LATERAL (
            SELECT sum(l.quantity)::bigint AS quantity, sum(l.billable)::bigint AS billable,
                   sum(l.amount)::bigint AS amount
            FROM billing_lines l
            WHERE l.tenant_id = c.tenant_id AND l.meter = c.meter AND l.meter_currency = c.meter_currency
              AND l.usage_period = c.usage_period AND l.period < p_period
        ) issued ON true
        LEFT JOIN LATERAL (
            SELECT l.plan, l.included, l.unit_price, l.unit_size, l.currency, l.hard_limit
            FROM billing_lines l
            WHERE l.tenant_id = c.tenant_id AND l.period = c.usage_period
              AND l.usage_period = c.usage_period AND l.meter = c.meter
            ORDER BY l.meter_currency COLLATE "C"
            LIMIT 1
        ) origin ON true
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
    FROM adjustment_lines a
$q$;
    usage_page text := $q$
    WITH page AS (
        SELECT t.id, t.slug, t.plan FROM tenants t
        WHERE (p_after IS NULL OR t.id > p_after) AND app_scope_admits(t.id)
        ORDER BY t.id
        LIMIT least(greatest(p_limit, 0), 1000)
    )
    SELECT p.id, p.slug, p.plan, u.meter, u.currency, u.used
    FROM page p
    LEFT JOIN LATERAL (
        SELECT c.meter, c.currency,
               (CASE WHEN billing_meter_is_gauge(c.meter) THEN max(c.quantity) ELSE sum(c.quantity) END)::bigint AS used
        FROM usage_counters c
        WHERE c.tenant_id = p.id AND c.billing_period = p_period
        GROUP BY c.meter, c.currency
    ) u ON true
    ORDER BY p.id, u.meter COLLATE "C", u.currency COLLATE "C"
$q$;
BEGIN
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION billing_live_lines(p_period text)
RETURNS TABLE (tenant_id uuid, meter text, meter_currency text, usage_period text,
               tenant_slug text, plan text, quantity bigint, included bigint, billable bigint,
               unit_price bigint, unit_size bigint, amount bigint, currency text, hard_limit boolean)
LANGUAGE %s STABLE
SET search_path = pg_catalog, public
AS %L
$f$, CASE WHEN citus THEN 'plpgsql' ELSE 'sql' END,
        CASE WHEN citus THEN E'\n#variable_conflict use_column\nBEGIN\n    RETURN QUERY ' || trim(live_lines, E'\n') || E';\nEND\n'
             ELSE live_lines END);
    EXECUTE format($f$
CREATE OR REPLACE FUNCTION billing_usage_page(p_period text, p_after uuid, p_limit int)
RETURNS TABLE (tenant_id uuid, tenant_slug text, plan text, meter text, meter_currency text, used bigint)
LANGUAGE %s STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS %L
$f$, CASE WHEN citus THEN 'plpgsql' ELSE 'sql' END,
        CASE WHEN citus THEN E'\n#variable_conflict use_column\nBEGIN\n    RETURN QUERY ' || trim(usage_page, E'\n') || E';\nEND\n'
             ELSE usage_page END);
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
    INSERT INTO billing_lines (tenant_id, period, meter, meter_currency, usage_period, tenant_slug, plan,
                               quantity, included, billable, unit_price, unit_size, amount, currency, hard_limit)
    SELECT l.tenant_id, p_period, l.meter, l.meter_currency, l.usage_period, l.tenant_slug, l.plan,
           l.quantity, l.included, l.billable, l.unit_price, l.unit_size, l.amount, l.currency, l.hard_limit
    FROM billing_live_lines(p_period) l;
    RETURN 'closed';
END
$body$
$f$;
END
$do$;
