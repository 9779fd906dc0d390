// Package idempotency makes a POST sent with an Idempotency-Key header run at
// most once per key, so that a client retrying after a timeout (POST
// /v1/payments above all) is never charged twice.
//
// It owns the idempotency_keys table (migration 0004): one row per tenant,
// credential and key, holding a hash of the request and, once the handler
// has answered, its status, body and a few headers for 24 hours.
// Store.Claim claims the key before the handler runs and Claim.Finish
// stores the response after it (middleware.Idempotency makes the HTTP
// calls; this package imports no gin);
// a repeat with the same body gets the stored response again with
// Idempotent-Replayed: true, a repeat with another body 422
// idempotency_key_reused, and a repeat while the first is still running 409
// conflict. A 5xx answer or a panic releases the key so the client may retry;
// a release that fails is tried again a few times with backoff.
// The claim is a lease of a few seconds (Lease, by PostgreSQL's clock) that
// the running request renews every RenewEvery, so the key of a request
// whose process died, or lost PostgreSQL, is free again within Lease.
//
// It needs an authenticated identity.Principal with a tenant in the request
// context (so it runs after authentication and authorization), and the
// request body already capped in size. Store.RunSweeper deletes expired keys
// of every tenant through the idempotency_sweep SECURITY DEFINER function.
package idempotency
