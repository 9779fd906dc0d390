-- Identity and access: members signed in through a tenant's OIDC provider,
-- the Casbin policy store, and the narrow lookup of tenants by issuer.

-- Members: a user of a tenant, identified by (issuer, subject) once bound;
-- an invitation waits on a verified email until the first sign-in binds it.
CREATE TABLE members (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id              uuid NOT NULL,
    issuer          text,
    subject         text CHECK (length(subject) BETWEEN 1 AND 255),
    email           text CHECK (length(email) BETWEEN 3 AND 320),
    roles           text[] NOT NULL,
    status          text NOT NULL CHECK (status IN ('invited', 'active')),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT members_bound CHECK ((status = 'active') = (subject IS NOT NULL AND issuer IS NOT NULL)),
    CONSTRAINT members_invited_email CHECK (status = 'active' OR email IS NOT NULL)
);
CREATE UNIQUE INDEX members_tenant_subject_key ON members (tenant_id, issuer, subject) WHERE subject IS NOT NULL;
CREATE UNIQUE INDEX members_tenant_invite_key ON members (tenant_id, lower(email)) WHERE status = 'invited';
ALTER TABLE members ENABLE ROW LEVEL SECURITY;
ALTER TABLE members FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON members
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
GRANT SELECT, INSERT, UPDATE, DELETE ON members TO tenantd_app;

-- Casbin policies (github.com/casbin/gorm-adapter/v3 layout). Every rule's
-- domain is a tenant id, or '*' for the built-in roles. Kept out of tenant
-- RLS: the adapter loads rules outside tenant transactions.
CREATE TABLE casbin_rule (
    id    bigserial PRIMARY KEY,
    ptype varchar(100) NOT NULL DEFAULT '',
    v0    varchar(100) NOT NULL DEFAULT '',
    v1    varchar(100) NOT NULL DEFAULT '',
    v2    varchar(100) NOT NULL DEFAULT '',
    v3    varchar(100) NOT NULL DEFAULT '',
    v4    varchar(100) NOT NULL DEFAULT '',
    v5    varchar(100) NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX idx_casbin_rule ON casbin_rule (ptype, v0, v1, v2, v3, v4, v5);
CREATE INDEX casbin_rule_domain ON casbin_rule (v1, ptype);
GRANT SELECT, INSERT, UPDATE, DELETE ON casbin_rule TO tenantd_app;
GRANT USAGE, SELECT ON SEQUENCE casbin_rule_id_seq TO tenantd_app;

-- The one way to find the tenants that registered an OIDC issuer before the
-- tenant is known: their ids, status, plan and OIDC settings. Runs as the
-- owner; reveals nothing but what a verified token needs.
CREATE FUNCTION auth_oidc_tenants(p_issuer text)
RETURNS TABLE (tenant_id uuid, tenant_slug text, tenant_status text, tenant_plan text, oidc jsonb)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT t.id, t.slug, t.status, t.plan, t.settings -> 'oidc'
    FROM tenants t
    WHERE t.settings -> 'oidc' ->> 'issuer' = p_issuer
    ORDER BY t.id
$$;
REVOKE ALL ON FUNCTION auth_oidc_tenants(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_oidc_tenants(text) TO tenantd_app;

-- Is this issuer registered by any tenant? Discovery runs only for those.
CREATE INDEX tenants_oidc_issuer ON tenants ((settings -> 'oidc' ->> 'issuer'));
