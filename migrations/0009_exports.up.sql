-- Billing exports: the invoice lines of closed periods, frozen when the
-- period is closed; a record of every export produced; and the narrow
-- cross-tenant reads behind the admin usage report and the exports.

-- The SECURITY DEFINER functions below run as the owner, whom FORCE ROW
-- LEVEL SECURITY binds too: the owner (and only the owner) reads every
-- tenant's counters. tenantd_app is not the owner, so this admits it nothing.
CREATE POLICY owner_billing ON usage_counters FOR SELECT TO CURRENT_USER USING (true);

-- When a closed period's lines were computed and stored (billing_lines). A
-- period closed some other way (a row inserted directly) gets its lines at
-- its first export; its counters are frozen from the close either way.
ALTER TABLE billing_periods ADD COLUMN lines_frozen_at timestamptz;

-- Helpers of the functions below, plain SQL expressions that PostgreSQL
-- inlines into the calling query (no SET clause, or every call would go
-- through the SQL function executor: seconds for 100,000 tenants). They call
-- built-in operators only.

-- True for the meters that are gauges (a level, billed at its highest hourly
-- value in the period) rather than counts (billed as the sum).
CREATE FUNCTION billing_meter_is_gauge(p_meter text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT p_meter = 'active_products' $$;

-- Units over the included quantity that are billed: none for hard limits
-- (usage past a hard limit is refused, never billed).
CREATE FUNCTION billing_billable(p_quantity bigint, p_included bigint, p_hard boolean) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN p_hard THEN 0 ELSE greatest(p_quantity - p_included, 0) END $$;

-- ceil(billable / unit_size) * unit_price, in integers (no overflow from
-- adding unit_size first).
CREATE FUNCTION billing_amount(p_billable bigint, p_unit_price bigint, p_unit_size bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (p_billable / p_unit_size + (p_billable % p_unit_size > 0)::int) * p_unit_price $$;

-- A closed period's invoice lines, one per tenant x meter x meter currency
-- (usage lines, usage_period = period) plus adjustment lines for late counts
-- of earlier closed periods (usage_period = the month they occurred in).
-- Slug, plan and prices are copied, so a later rename, plan change or price
-- change never alters an issued export. Written only by
-- billing_close_period; a tenant reads its own lines.
CREATE TABLE billing_lines (
    tenant_id      uuid    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    period         text    NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    meter          text    NOT NULL,
    meter_currency text    NOT NULL DEFAULT '',
    usage_period   text    NOT NULL CHECK (usage_period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    tenant_slug    text    COLLATE "C" NOT NULL,
    plan           text    NOT NULL,
    quantity       bigint  NOT NULL CHECK (quantity >= 0),
    included       bigint  NOT NULL CHECK (included >= 0),
    billable       bigint  NOT NULL CHECK (billable >= 0),
    unit_price     bigint  NOT NULL CHECK (unit_price >= 0),
    unit_size      bigint  NOT NULL CHECK (unit_size > 0),
    amount         bigint  NOT NULL CHECK (amount >= 0),
    currency       text    NOT NULL,
    hard_limit     boolean NOT NULL,
    PRIMARY KEY (tenant_id, period, meter, meter_currency, usage_period)
);
-- The export reads a whole period across tenants; adjustments look up a
-- tenant's lines of their origin period through the primary key.
CREATE INDEX billing_lines_period ON billing_lines (period, tenant_id);
ALTER TABLE billing_lines ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing_lines FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON billing_lines
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
-- billing_close_period writes every tenant's lines as the owner.
CREATE POLICY owner_billing ON billing_lines TO CURRENT_USER USING (true) WITH CHECK (true);
GRANT SELECT ON billing_lines TO tenantd_app;

-- Every export issued (CLI or API), always of a closed period: platform
-- data, no tenant_id. A download regenerates the bytes from billing_lines
-- and checks them against sha256.
CREATE TABLE billing_exports (
    id          uuid    PRIMARY KEY,
    period      text    NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    format      text    NOT NULL CHECK (format IN ('csv', 'jsonl')),
    row_count   bigint  NOT NULL CHECK (row_count >= 0),
    byte_count  bigint  NOT NULL CHECK (byte_count >= 0),
    sha256      text    NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_by  text    NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_exports_period ON billing_exports (period, format, created_at);
GRANT SELECT, INSERT ON billing_exports TO tenantd_app;

-- The lines of p_period computed from the counters as they are now (not
-- callable by tenantd_app; the SECURITY DEFINER functions below use it):
--   usage lines: every tenant created before the period ended or with
--     counts in it, one per meter of its current plan (quantity 0 without
--     usage), one per meter currency for meters counted in currencies;
--   adjustment lines: counts attributed to p_period that occurred in an
--     earlier, closed month, billed as the increase of that month's total
--     under that month's stored plan and terms: what it would cost with
--     them now, minus what its lines (and earlier adjustments) billed.
-- Unordered: callers sort.
CREATE FUNCTION billing_live_lines(p_period text)
RETURNS TABLE (tenant_id uuid, meter text, meter_currency text, usage_period text,
               tenant_slug text, plan text, quantity bigint, included bigint, billable bigint,
               unit_price bigint, unit_size bigint, amount bigint, currency text, hard_limit boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, public
AS $$
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
$$;
REVOKE ALL ON FUNCTION billing_live_lines(text) FROM PUBLIC;

-- Closes p_period if it has ended (by the database clock) and is not closed
-- yet, storing its lines; answers 'open' (not ended: nothing done), 'closed'
-- (closed now) or 'final' (closed before). Closing takes a SHARE lock on
-- usage_counters: it waits for flushes in flight and holds new ones back
-- until it commits, so no count lands in the period after its lines are
-- computed (a flusher that decides the period after taking its own lock
-- then sees the period closed and attributes the count to the next one).
CREATE FUNCTION billing_close_period(p_period text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    v_frozen int;
BEGIN
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
$$;
REVOKE ALL ON FUNCTION billing_close_period(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing_close_period(text) TO tenantd_app;

-- The lines of one export: the stored lines of a closed period (p_final),
-- or the live, provisional lines of an open one. Callers sort (slug, meter,
-- meter currency, usage period) with COLLATE "C".
CREATE FUNCTION billing_export_rows(p_period text, p_final boolean)
RETURNS TABLE (tenant_id uuid, meter text, meter_currency text, usage_period text,
               tenant_slug text, plan text, quantity bigint, included bigint, billable bigint,
               unit_price bigint, unit_size bigint, amount bigint, currency text, hard_limit boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
BEGIN
    IF NOT p_final THEN
        RETURN QUERY SELECT * FROM billing_live_lines(p_period);
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM billing_periods WHERE period = p_period AND lines_frozen_at IS NOT NULL) THEN
        RAISE EXCEPTION 'billing period % is not closed', p_period USING ERRCODE = 'P0002';
    END IF;
    RETURN QUERY
        SELECT l.tenant_id, l.meter, l.meter_currency, l.usage_period, l.tenant_slug::text, l.plan,
               l.quantity, l.included, l.billable, l.unit_price, l.unit_size, l.amount, l.currency, l.hard_limit
        FROM billing_lines l WHERE l.period = p_period;
END
$$;
REVOKE ALL ON FUNCTION billing_export_rows(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing_export_rows(text, boolean) TO tenantd_app;

-- How many tenants an export of p_period covers (for progress reports).
CREATE FUNCTION billing_export_tenants(p_period text, p_final boolean)
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT CASE WHEN p_final THEN
        (SELECT count(DISTINCT l.tenant_id) FROM billing_lines l WHERE l.period = p_period)
    ELSE
        (SELECT count(*) FROM tenants t
         WHERE t.created_at < ((p_period || '-01')::timestamp + interval '1 month') AT TIME ZONE 'UTC'
            OR t.id IN (SELECT u.tenant_id FROM usage_counters u WHERE u.billing_period = p_period))
    END
$$;
REVOKE ALL ON FUNCTION billing_export_tenants(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing_export_tenants(text, boolean) TO tenantd_app;

-- The admin usage report: one page of tenants by id (after p_after, at most
-- p_limit, capped at 1000) with what each used per meter and currency in
-- p_period (sum of counts; highest hour of gauges). Tenants without usage
-- come back once with meter NULL.
CREATE FUNCTION billing_usage_page(p_period text, p_after uuid, p_limit int)
RETURNS TABLE (tenant_id uuid, tenant_slug text, plan text, meter text, meter_currency text, used bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    WITH page AS (
        SELECT t.id, t.slug, t.plan FROM tenants t
        WHERE p_after IS NULL OR t.id > p_after
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
$$;
REVOKE ALL ON FUNCTION billing_usage_page(text, uuid, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing_usage_page(text, uuid, int) TO tenantd_app;
