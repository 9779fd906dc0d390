-- Runtime role: logs in, owns nothing, cannot bypass row-level security.
-- Created here if missing; concurrent migrations of other databases in the
-- same cluster may race to create it, which is harmless.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantd_app') THEN
        CREATE ROLE tenantd_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO tenantd_app', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO tenantd_app;
GRANT SELECT ON schema_migrations TO tenantd_app;

-- Plans are a platform catalogue, the same for every tenant.
CREATE TABLE plans (
    name            text PRIMARY KEY,
    display_name    text   NOT NULL,
    rate_per_second int    NOT NULL CHECK (rate_per_second > 0),
    burst           int    NOT NULL CHECK (burst > 0),
    monthly_price   bigint NOT NULL CHECK (monthly_price >= 0),
    currency        text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    sort_order      int    NOT NULL
);
INSERT INTO plans (name, display_name, rate_per_second, burst, monthly_price, currency, sort_order) VALUES
    ('free',       'Free',       10,   20,   0,     'EUR', 1),
    ('pro',        'Pro',        100,  200,  4900,  'EUR', 2),
    ('enterprise', 'Enterprise', 1000, 2000, 49900, 'EUR', 3);
GRANT SELECT ON plans TO tenantd_app;

-- Tenants. A tenant sees its own row; operator work goes through the
-- dedicated platform policy (app.platform set by db.WithPlatform); the owner
-- reads it for SECURITY DEFINER credential lookups.
CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    slug       text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]{3,40}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    plan       text NOT NULL REFERENCES plans (name),
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    settings   jsonb NOT NULL DEFAULT '{}'::jsonb,
    version    int  NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_self ON tenants
    USING (id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
CREATE POLICY platform_operator ON tenants
    USING ((SELECT current_setting('app.platform', true)) = 'on')
    WITH CHECK ((SELECT current_setting('app.platform', true)) = 'on');
CREATE POLICY owner_lookup ON tenants FOR SELECT TO CURRENT_USER USING (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants TO tenantd_app;

-- API keys: tk_<prefix>_<secret>; only a SHA-256 of the whole key is stored.
CREATE TABLE api_keys (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL,
    roles        text[] NOT NULL,
    created_by   text NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
-- The prefix is looked up before the tenant is known, so it is unique across
-- tenants; it is random and carries nothing of the tenant.
CREATE UNIQUE INDEX api_keys_prefix_key ON api_keys (prefix);
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
CREATE POLICY owner_lookup ON api_keys FOR SELECT TO CURRENT_USER USING (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys TO tenantd_app;

-- The one way to find an API key before its tenant is known: by prefix,
-- returning the key and its tenant's status. Runs as the owner.
CREATE FUNCTION auth_api_key_lookup(p_prefix text)
RETURNS TABLE (key_id uuid, tenant_id uuid, secret_hash bytea, roles text[],
               expires_at timestamptz, revoked_at timestamptz,
               tenant_slug text, tenant_status text, tenant_plan text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT k.id, k.tenant_id, k.secret_hash, k.roles, k.expires_at, k.revoked_at,
           t.slug, t.status, t.plan
    FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
    WHERE k.prefix = p_prefix
$$;
REVOKE ALL ON FUNCTION auth_api_key_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_api_key_lookup(text) TO tenantd_app;

-- Products and their stock.
CREATE TABLE products (
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id             uuid NOT NULL,
    sku            text NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price          bigint NOT NULL CHECK (price >= 0),
    currency       text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    stock_on_hand  bigint NOT NULL CHECK (stock_on_hand >= 0),
    stock_reserved bigint NOT NULL DEFAULT 0 CHECK (stock_reserved >= 0 AND stock_reserved <= stock_on_hand),
    version        int NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT products_tenant_sku_key UNIQUE (tenant_id, sku)
);
ALTER TABLE products ENABLE ROW LEVEL SECURITY;
ALTER TABLE products FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON products
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
GRANT SELECT, INSERT, UPDATE, DELETE ON products TO tenantd_app;
