-- Metering and billing: what each plan includes and charges per meter, the
-- usage counters flushed from Redis, and closed billing periods.

-- Per plan and meter: the monthly included quantity, the price of each unit
-- over it (minor units of currency), and whether the limit is hard (requests
-- refused with 429 quota_exceeded once used up) or soft (overage billed).
CREATE TABLE plan_meters (
    plan       text   NOT NULL REFERENCES plans (name),
    meter      text   NOT NULL CHECK (meter IN ('api_requests', 'orders_created', 'payment_volume', 'active_products')),
    included   bigint NOT NULL CHECK (included >= 0),
    unit_price bigint NOT NULL CHECK (unit_price >= 0), -- per unit_size units over the included quantity
    unit_size  bigint NOT NULL DEFAULT 1 CHECK (unit_size > 0),
    currency   text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    hard_limit boolean NOT NULL,
    PRIMARY KEY (plan, meter)
);
INSERT INTO plan_meters (plan, meter, included, unit_price, unit_size, currency, hard_limit) VALUES
    ('free',       'api_requests',    100000,     0,    1000,  'EUR', true),
    ('free',       'orders_created',  100,        0,    1,     'EUR', true),
    ('free',       'payment_volume',  1000000,    0,    10000, 'EUR', true),
    ('free',       'active_products', 50,         0,    1,     'EUR', true),
    ('pro',        'api_requests',    5000000,    10,   1000,  'EUR', false),
    ('pro',        'orders_created',  10000,      2,    1,     'EUR', false),
    ('pro',        'payment_volume',  100000000,  5,    10000, 'EUR', false),
    ('pro',        'active_products', 10000,      1,    1,     'EUR', false),
    ('enterprise', 'api_requests',    100000000,  5,    1000,  'EUR', false),
    ('enterprise', 'orders_created',  1000000,    1,    1,     'EUR', false),
    ('enterprise', 'payment_volume',  10000000000, 2,   10000, 'EUR', false),
    ('enterprise', 'active_products', 1000000,    0,    1,     'EUR', false);
GRANT SELECT ON plan_meters TO tenantd_app;

-- Usage counters, per tenant, meter, currency ('' for meters without one)
-- and hour, attributed to a billing period: the hour's own month, or, for
-- counts flushed after that month was closed, the next open one (an
-- adjustment, so an issued export never changes).
CREATE TABLE usage_counters (
    tenant_id      uuid   NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    meter          text   NOT NULL,
    currency       text   NOT NULL DEFAULT '',
    hour           timestamptz NOT NULL,
    billing_period text   NOT NULL CHECK (billing_period ~ '^[0-9]{4}-[0-9]{2}$'),
    quantity       bigint NOT NULL CHECK (quantity >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, meter, currency, hour, billing_period)
);
CREATE INDEX usage_counters_period ON usage_counters (billing_period, tenant_id, meter);
ALTER TABLE usage_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE usage_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON usage_counters
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
GRANT SELECT, INSERT, UPDATE ON usage_counters TO tenantd_app;

-- Flushes already applied, keyed by the unique name of the Redis key they
-- came from: a flusher that dies after the commit but before deleting the
-- key finds its name here next time, and only deletes the key.
CREATE TABLE usage_flushes (
    flush_key  text PRIMARY KEY,
    flushed_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, DELETE ON usage_flushes TO tenantd_app;

-- Closed billing periods: their exports are final.
CREATE TABLE billing_periods (
    period    text PRIMARY KEY CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    closed_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON billing_periods TO tenantd_app;
