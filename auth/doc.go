// Package auth owns credentials and what they may do: tenant API keys
// (stored only as hashes, cached once verified), the permissions of the API
// contract and the built-in roles that grant them. It publishes an
// Authenticator for the middleware chain, an Authorizer for route
// permissions, and IssueKey for the tenant module to mint a new tenant's
// first admin key inside the tenant-creation transaction.
package auth
