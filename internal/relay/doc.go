// Package relay publishes tenantd's event log to NATS JetStream, for
// consumers outside the process (EVENT_RELAY=nats, NATS_URL).
//
// What it owns: the subscriber "relay-nats" of the event dispatcher (its
// checkpoint row in event_checkpoints) and the JetStream stream
// TENANTD_EVENTS (subjects tenantd.>), which it creates when it is missing
// and otherwise leaves as the operator configured it.
//
// What it publishes: every event, of every type and tenant, as one message
// on subject tenantd.<tenant_id>.<event type>, with header Nats-Msg-Id set
// to the event id; the body is the event as JSON (Message). Relay.Lag and
// the tenantd_relay_* counters say how far behind it is. StartEmbedded runs
// a throw-away JetStream server for `tenantd dev` and the tests.
//
// What it needs: internal/events (a dispatcher of its own, reading the log
// through the settled horizon) and a NATS server with JetStream.
//
// # Guarantees
//
// In order per stream, at least once, and effectively once. The relay is a
// batch subscriber: the dispatcher hands it the events after its checkpoint
// in position order (grouped by tenant within a batch, each tenant's in
// position order, so each event stream's in version order), and it
// publishes them one at a time, synchronously, each waiting for JetStream's
// acknowledgement that the message is stored, before the next. Only when
// every event of the batch is acknowledged does the handler return, and the
// dispatcher commits the checkpoint past them. A crash, a lost connection
// or a stop between a publish and that commit sends the same events again,
// in the same order, after a restart (on this replica or another that takes
// the subscriber's lease over). JetStream drops a message whose
// Nats-Msg-Id it has stored within the stream's duplicate window
// (Options.DuplicateWindow, one hour by default, applied when the relay
// creates the stream), so each event is stored once.
//
// The relay never gives up on an event: it runs its own dispatcher with no
// limit on attempts, so while NATS is unreachable, or refuses a message, the
// relay stalls and retries (with backoff up to 5 s) and its lag grows,
// instead of parking events as dead letters and going on out of order.
// What could fail forever is made impossible: a subject token that NATS
// would refuse is escaped (Subject), and an event larger than the server's
// max_payload is sent without its data (header Tenantd-Data-Omitted) so
// that its consumers fetch it through GET /v1/events.
//
// Limits: a relay that published events and then could not commit its
// checkpoint for longer than the duplicate window stores those events a
// second time (same Nats-Msg-Id, same order); consumers that must be
// exactly once keep de-duplicating by Nats-Msg-Id. The duplicate window
// costs server memory per message id held.
package relay
