// Package tenant owns tenants and plans: creating a tenant with its first
// admin key, suspending and reactivating it, and the tenant's own settings.
// Operator routes live under /admin/v1; a tenant reads and edits itself
// under /v1/tenant. It needs a KeyIssuer (auth) to mint the admin key, a
// CredentialCache to forget cached credentials when a tenant changes, an
// IssuerChecker for the issuers it registers, and Grants (auth) to refuse
// sign-in settings that hand out roles the actor does not hold.
package tenant
