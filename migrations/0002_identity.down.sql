DROP INDEX IF EXISTS tenants_oidc_issuer;
DROP FUNCTION IF EXISTS auth_oidc_tenants(text);
DROP TABLE IF EXISTS casbin_rule;
DROP TABLE IF EXISTS members;
