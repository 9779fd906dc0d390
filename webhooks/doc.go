// Package webhooks sends a tenant's events to the HTTP endpoints it
// registers, signed as the Standard Webhooks specification says
// (https://www.standardwebhooks.com): headers webhook-id (the event id, the
// same on every attempt), webhook-timestamp (Unix seconds) and
// webhook-signature ("v1,<base64 HMAC-SHA256(key, id.timestamp.body)>",
// two space-separated signatures for 24 h after a secret rotation); body
// {"type","timestamp","data"}.
//
// What it owns: the tenant tables webhook_endpoints, webhook_deliveries and
// webhook_attempts (migrations/0020_webhooks.up.sql, under row-level
// security), and the worker role's SECURITY DEFINER function
// webhook_deliveries_due, which finds due deliveries across tenants as
// (tenant, delivery) pairs.
//
// What it publishes:
//
//   - Service: the use cases of the routes (endpoints with an event-type
//     filter, whsec_ secrets shown once, rotation, test event, recover
//     since a time, the delivery log, retrying one delivery).
//   - Service.Subscribe: the event feed. For each event it enqueues one
//     delivery per enabled endpoint whose filter admits the type, in the
//     dispatcher's transaction, and does nothing else: sending never holds
//     the dispatcher up.
//   - Service.Run: the delivery workers (every replica runs them).
//   - Handler: the /v1/webhooks routes (webhooks:read, webhooks:write).
//
// What it needs: internal/db (tenant transactions, the worker pool),
// internal/events (the dispatcher and the events it reads to recover),
// internal/netguard (outbound address checks, as for OIDC), internal/audit
// (the events written when an endpoint is disabled), internal/httpx and
// internal/fault.
//
// # Delivery
//
// At least once. A worker claims a due delivery in its tenant's
// transaction (SELECT … FOR UPDATE SKIP LOCKED) and leases it to its
// process until Options.Lease, then sends it outside any transaction
// (Options.Timeout, 15 s; redirects are not followed; every connection
// passes the netguard dial check, so a name that resolves to a private
// address is refused unless WEBHOOK_ALLOW_PRIVATE=true), and records the
// outcome only while it still holds the lease. A replica that dies leaves
// leases that expire, and the deliveries are claimed again: nothing is left
// in flight without an owner. A receiver may so see a message twice; the
// webhook-id is its idempotency key.
//
// Per-endpoint queues: webhook_deliveries_due hands out at most
// Options.PerEndpoint deliveries of one endpoint at a time, counting those
// in flight on any replica, and a process sends at most Options.Workers at
// once; so a slow endpoint ties up at most PerEndpoint workers and the
// others keep flowing.
//
// Outcomes: 2xx succeeds. 410 Gone fails the delivery and disables the
// endpoint. Anything else (another status, a timeout, a refused address)
// is retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 24 h (±10 %
// jitter), then the delivery fails. An endpoint that has failed every
// attempt for 3 days is disabled. Both disables write an audit event
// (webhook.disabled, actor system:webhooks). A circuit breaker per
// endpoint (in each process, sony/gobreaker) opens after 5 consecutive
// failures: while it is open deliveries are put back for 30 s without
// being sent or counted as attempts. Deliveries of a disabled endpoint
// stay pending until it is enabled again (PATCH status) or deleted.
// Finished deliveries are kept Options.Retention (30 days): each recorded
// attempt removes up to 100 of its endpoint's older ones.
//
// # Secrets
//
// HMAC needs the key itself, so it cannot be stored as a hash. With
// WEBHOOK_SECRET_KEY set, keys are sealed with AES-256-GCM bound to their
// tenant and endpoint (Box), so a database read alone does not reveal
// them; without it they are stored as they are, and the process warns at
// start. Secrets are never logged and never shown again after the answer
// that creates them.
package webhooks
