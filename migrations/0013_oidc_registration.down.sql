DROP INDEX IF EXISTS tenants_oidc_issuer_audience_key;
