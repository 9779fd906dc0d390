// Package auth owns credentials and what they may do: tenant API keys
// (stored only as hashes, cached once verified, never living longer than
// the maximum key lifetime), members signed in through a tenant's OIDC
// provider, the permissions of the API contract, and the built-in and
// custom roles that grant them. It enforces that nobody grants, takes away
// or acts on what they do not hold, and that a tenant never loses its last
// admin (admins.go). It publishes an Authenticator for the middleware
// chain, an Authorizer for route permissions, IssueKey for the tenant
// module to mint a new tenant's first admin key inside the tenant-creation
// transaction, and the grant questions (MissingPermissions, RoleExists,
// MemberRoles) the tenant module asks about sign-in settings.
package auth
