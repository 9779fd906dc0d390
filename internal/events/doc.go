// Package events is tenantd's event store, outbox and in-process event bus.
//
// What it owns: the append-only events table (a tenant table under
// row-level security: streams with optimistic concurrency on (tenant,
// stream, version) and a global position), event_checkpoints (one row per
// subscriber, platform data), dead_letters (a tenant table), and the one
// cross-tenant read, the SECURITY DEFINER function events_dispatch_batch
// (migrations/0003_events.up.sql). The runtime role may only SELECT and
// INSERT events.
//
// What it publishes:
//
//   - Append, inside a module's db.WithTenant transaction, so that the
//     events commit or roll back with the state change (the outbox). It
//     fills Metadata from the context (request id, actor, cause) and
//     NOTIFYs dispatchers at commit. Load and List read a tenant's events.
//   - Dispatcher: modules Subscribe(name, types, handler) before Run; the
//     dispatcher delivers every event of those types to the handler at
//     least once, in position order, and records the subscriber's
//     checkpoint in the handler's own transaction, so the handler's
//     database effects happen exactly once. Other effects must be
//     idempotent.
//
// What it needs: internal/db for the pool and tenant transactions,
// internal/identity for the request id and principal, internal/fault for
// error codes.
//
// # Delivery
//
// A subscriber handles one event at a time, in global position order, and
// checkpoints after each. Within a stream a later version is appended by a
// transaction that saw the earlier one committed, so it draws a later
// position: position order is version order, and per-stream order needs
// nothing more. The price is that one subscriber's throughput is that of one
// transaction at a time; subscribers run in parallel with each other.
//
// Positions come from a sequence and commit out of order. The dispatcher
// reads only up to a settled horizon, a position at or below which no
// appending transaction is still in flight (see horizon.go for the argument
// and for why transaction-id watermarks fall short), so it never moves past
// an event that has yet to commit. An appending transaction left open holds
// delivery back until it ends.
//
// A dispatcher is woken by LISTEN/NOTIFY on Options.ListenURL and polls
// every Options.PollInterval in any case.
//
// # Replicas
//
// Every replica may run a Dispatcher with the same subscribers. A replica
// works for a subscriber while it holds that subscriber's session advisory
// lock on a dedicated connection; the others retry every PollInterval, so
// when a replica dies (its connection closes) another takes over. The lock
// is for efficiency: correctness does not rest on it, because each handler
// transaction locks the checkpoint row and checks it still reads what the
// worker expects, so two workers can never both commit one event.
//
// # Failures
//
// A handler error (or panic) rolls its transaction back; the event is tried
// again after Options.Backoff, up to Options.MaxAttempts times. Then it is
// parked in dead_letters, with the checkpoint moved past it in the same
// transaction, and the subscriber goes on. DeadLetters lists a tenant's
// parked events and Replay runs the handler on one again (out of stream
// order, by then). Database failures outside the handler stop the worker,
// which restarts from its checkpoint after a backoff.
package events
