-- One tenant per OIDC registration: an (issuer, audience) pair belongs to
-- at most one tenant. Otherwise a tenant could register another's pair and
-- make that tenant's members name their tenant (X-Tenant) to sign in.
-- tenants is the platform-level lookup of registrations
-- (auth_oidc_tenants), so the rule lives there; a unique index sees every
-- tenant's row whatever row-level security shows the writer.

-- Refuse to start on data that already breaks the rule, saying which pair:
-- an operator must first make the tenants involved register distinct
-- audiences (or remove one registration).
DO $$
DECLARE
    dup record;
BEGIN
    SELECT t.settings -> 'oidc' ->> 'issuer' AS issuer,
           t.settings -> 'oidc' ->> 'audience' AS audience,
           string_agg(t.slug, ', ' ORDER BY t.slug) AS slugs
    INTO dup
    FROM tenants t
    WHERE t.settings -> 'oidc' ->> 'issuer' IS NOT NULL
    GROUP BY 1, 2
    HAVING count(*) > 1
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'tenants % share the OIDC issuer % and audience %: give each its own audience before migrating',
            dup.slugs, dup.issuer, dup.audience;
    END IF;
END
$$;

CREATE UNIQUE INDEX tenants_oidc_issuer_audience_key
    ON tenants ((settings -> 'oidc' ->> 'issuer'), (settings -> 'oidc' ->> 'audience'))
    WHERE settings -> 'oidc' ->> 'issuer' IS NOT NULL;
