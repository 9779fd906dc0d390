// Package audit keeps each tenant's audit trail: who did what, when and
// from where, for every mutating request and every security event.
//
// What it owns: the audit_events table (migrations 0010 and 0011), a tenant
// table under row-level security to which the runtime role may SELECT,
// INSERT, and UPDATE only seq, prev_hash and hash of rows not sealed yet.
// Each tenant's events form one hash chain, seq 1, 2, 3, …: hash =
// SHA-256(prev_hash || the row's canonical encoding, see Event.computeHash),
// prev_hash being the previous event's hash (32 zero bytes for seq 1).
//
// Writers take no tenant-wide lock and never read the chain's head: a row
// is inserted unsealed (seq and hashes NULL) in the writer's transaction,
// and next_append_position() (migrations/0025), called in the INSERT,
// gives it a position from events_position_seq under the shared append
// lock events take too (on Citus, on the coordinator). After commit the sealer
// (RunSealer, one replica at a time) links rows into their chains in
// position order, but only up to the settled horizon of that sequence
// (internal/events.Horizon), below which every row has committed or never
// will: so no row can later appear in the middle of a chain, and a tenant's
// seq order is its position order. Sealed rows cannot change (a trigger
// refuses it, to every role that has not disabled triggers): only a
// superuser or the table's owner can change or delete rows, by going around
// the trigger or row-level security. Verify finds the first row where the
// chain stops holding (a changed row, a removed one, a replaced hash), and
// reports rows left unsealed.
//
// What it publishes:
//
//   - Record, which a module calls inside its own db.WithTenant transaction
//     for a security event (an API key created or revoked, a member added,
//     removed or given other roles, a member's first sign-in, a role
//     changed), so the event commits or rolls back with the change. Actor,
//     request id, client address and User-Agent come from the context.
//   - Auditor.Audits, Auditor.StartRequest, Auditor.BindRequest and
//     Auditor.BeforeCommit (installed with db.DB.SetBeforeCommit), plain Go
//     calls for middleware.Audit and middleware.AuditBind, which write one
//     entry per POST, PUT, PATCH and DELETE request: atomically with the
//     request's first committed write when there is one, else after the
//     response with its status (see StartRequest for the exact guarantee).
//     Auditor.WithRequestOrigin (middleware.Origins) puts the client's
//     address and User-Agent in the context for events recorded before
//     authentication.
//   - Auditor.AuthFailed, which the authentication path calls on each
//     failure; bursts against a known tenant become auth.failed_burst
//     events.
//   - Auditor.RunSealer, the sealer, which every replica runs.
//   - Handler: GET /v1/audit-events (audit:read), filtered by actor,
//     action, resource (exact, or prefix with a trailing "*") and time,
//     newest first by position with a position cursor; rows not sealed yet
//     show as such.
//   - Verify, VerifyAll and RunVerifyCLI (`tenantd audit verify
//     [--tenant] [--max-unsealed-age]`).
//
// What it needs: internal/db for tenant transactions and the commit hook,
// internal/events for the settled horizon, internal/identity for the
// principal and request id, internal/httpx and internal/fault for the HTTP
// side.
//
// # Limits
//
// The chain proves rows were not changed or removed in the middle. Removing
// the newest rows, or rewriting every row from some seq on, leaves a chain
// that holds: compare the head (seq and hash) that verify prints with one
// kept elsewhere. A row is in no chain until sealed, usually within a
// second of its commit; a transaction left open holds sealing back (every
// tenant's) until it ends or times out. Client addresses are as
// trustworthy as the engine's trusted-proxy setting. Failed
// authentications are counted per process.
package audit
