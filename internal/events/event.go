package events

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
)

// Metadata says why and for whom an event was appended.
type Metadata struct {
	RequestID     string `json:"request_id,omitempty"`
	Actor         string `json:"actor,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	TraceParent   string `json:"trace_parent,omitempty"`
}

// Event is one fact in a tenant's log: the Version-th change of stream
// StreamID, at global Position.
type Event struct {
	ID        uuid.UUID       `json:"id"`
	TenantID  uuid.UUID       `json:"tenant_id"`
	StreamID  string          `json:"stream_id"`
	Version   int64           `json:"version"`
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
	Metadata  Metadata        `json:"metadata"`
	Position  int64           `json:"position"`
	CreatedAt time.Time       `json:"created_at"`
}

// NewEvent is an event to append; Data is marshalled to JSON.
type NewEvent struct {
	Type string
	Data any
}

// AnyVersion as the expected version appends whatever the stream's version.
const AnyVersion = -1

// Limits on names, matching the events table's checks.
const (
	maxStreamID = 200
	maxType     = 200
)

// ErrVersionConflict means the stream moved on since the caller read it:
// reload and decide again.
var ErrVersionConflict error = fault.New(fault.Conflict, "the stream was changed concurrently: reload it and try again")

// Advisory lock classes (the first key of the two-key form), so that
// tenantd's advisory locks cannot collide with one another.
const (
	streamLockClass int32 = 0x65760001 // one stream's appends, held to commit
	leaseLockClass  int32 = 0x65760002 // one subscriber's worker, held by a session
)

// channel is the NOTIFY channel that wakes dispatchers.
const channel = "tenantd_events"

// Append appends evs to streamID inside tx (a db.WithTenant transaction for
// tenantID), expecting the stream's current version to be expected (0 = the
// stream must not exist yet; AnyVersion skips the check). Versions continue
// from the current one. Metadata comes from ctx: the request id, the
// principal's actor and the cause set by WithCause. Appends to an existing
// stream are serialised until the transaction ends; creating a stream takes
// no lock (see below). The dispatcher is notified at commit. On
// ErrVersionConflict the caller rolls back and retries the whole
// transaction.
func Append(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID, streamID string, expected int64, evs ...NewEvent) (_ []Event, err error) {
	defer wrap(&err, "append to stream %q", streamID)
	if tenantID == uuid.Nil {
		return nil, db.ErrNoTenant
	}
	if streamID == "" || len(streamID) > maxStreamID {
		return nil, fault.Invalid(fault.Field("stream_id", fmt.Sprintf("must be 1 to %d bytes", maxStreamID)))
	}
	if expected < AnyVersion {
		return nil, fault.Invalid(fault.Field("expected_version", "must be -1 (any) or at least 0"))
	}
	if len(evs) == 0 {
		return nil, nil
	}
	out := make([]Event, len(evs))
	md := metadataFrom(ctx)
	for i, ne := range evs {
		if ne.Type == "" || len(ne.Type) > maxType {
			return nil, fault.Invalid(fault.Field("type", fmt.Sprintf("must be 1 to %d bytes", maxType)))
		}
		data, err := json.Marshal(ne.Data)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", ne.Type, err)
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("event id: %w", err)
		}
		out[i] = Event{ID: id, TenantID: tenantID, StreamID: streamID, Type: ne.Type, Data: data, Metadata: md}
	}
	if md.CorrelationID == "" {
		// A first cause correlates with itself, and the events appended with it.
		for i := range out {
			out[i].Metadata.CorrelationID = out[0].ID.String()
		}
	}

	tx = tx.WithContext(ctx)
	var current int64
	if expected != 0 {
		// Serialise appends to this stream until commit, so the version read
		// next is the latest committed one (in READ COMMITTED) and a
		// concurrent append turns into ErrVersionConflict, not a unique
		// violation that aborts tx.
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?, hashtext(?))", streamLockClass, tenantID.String()+"/"+streamID).Error; err != nil {
			return nil, fmt.Errorf("lock stream: %w", err)
		}
		if err := tx.Raw("SELECT coalesce(max(version), 0) FROM events WHERE tenant_id = ? AND stream_id = ?",
			tenantID, streamID).Scan(&current).Error; err != nil {
			return nil, fmt.Errorf("read version: %w", err)
		}
		if expected != AnyVersion && current != expected {
			return nil, fmt.Errorf("expected version %d, stream is at %d: %w", expected, current, ErrVersionConflict)
		}
	}
	// A new stream (expected 0) takes no lock and reads nothing first: the
	// insert itself skips versions the stream has already, so creating a
	// stream costs one round trip, and finding it exists leaves tx usable.
	// A transaction creating the same stream at once makes the insert wait
	// for it, then skip (it committed) or insert (it rolled back).
	inserted, err := insertEvents(tx, tenantID, streamID, current, expected == 0, out)
	if err != nil {
		if db.IsUniqueViolation(err, "events_stream_version_key") || expected == 0 && db.SQLState(err) == "40001" {
			// Another transaction appended this version first (in
			// REPEATABLE READ, one the snapshot does not see); tx is
			// aborted, and the caller retries the whole transaction. The
			// PostgreSQL error stays in the chain, so that db.WithTenant
			// still runs a transaction that failed with 40001 again.
			return nil, fmt.Errorf("version %d taken: %w: %w", current+1, ErrVersionConflict, err)
		}
		return nil, fmt.Errorf("insert: %w", err)
	}
	if len(inserted) < len(out) && expected == 0 {
		if len(inserted) > 0 {
			// The stream existed with fewer events than evs: what was
			// inserted would continue it. Abort tx so nothing commits.
			return nil, abort(tx, fmt.Errorf("expected a new stream, it exists: %w", ErrVersionConflict))
		}
		return nil, fmt.Errorf("expected a new stream, it exists: %w", ErrVersionConflict)
	}
	if len(inserted) != len(out) {
		return nil, fmt.Errorf("insert: got %d rows back, want %d", len(inserted), len(out))
	}
	for _, r := range inserted {
		for i := range out {
			if out[i].ID == r.ID {
				out[i].Position, out[i].CreatedAt = r.Position, r.CreatedAt
			}
		}
	}
	// events_next_position (migrations/0025) notifies channel, once per
	// transaction, delivered at commit and not at all on rollback.
	return out, nil
}

// insertedEvent is what the insert returns of each row.
type insertedEvent struct {
	ID        uuid.UUID
	Position  int64
	CreatedAt time.Time
}

// insertEvents inserts out as versions current+1, current+2, … of the
// stream, skipping versions that exist when skipExisting, and returns the
// rows inserted. One INSERT … VALUES naming tenant_id, which Citus routes
// to the tenant's shard; events_next_position() in VALUES takes the append
// lock, notifies and draws the position in tx (on Citus, on the
// coordinator: see migrations/0025).
func insertEvents(tx *gorm.DB, tenantID uuid.UUID, streamID string, current int64, skipExisting bool, out []Event) ([]insertedEvent, error) {
	var (
		sb   strings.Builder
		args = make([]any, 0, 7*len(out))
	)
	sb.WriteString("INSERT INTO events (tenant_id, id, stream_id, version, type, data, metadata, position) VALUES ")
	for i := range out {
		out[i].Version = current + int64(i) + 1
		meta, err := json.Marshal(out[i].Metadata)
		if err != nil {
			return nil, fmt.Errorf("marshal metadata: %w", err)
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("(?::uuid, ?::uuid, ?::text, ?::bigint, ?::text, ?::jsonb, ?::jsonb, events_next_position())")
		args = append(args, tenantID, out[i].ID, streamID, out[i].Version, out[i].Type, string(out[i].Data), string(meta))
	}
	if skipExisting {
		sb.WriteString(" ON CONFLICT (tenant_id, stream_id, version) DO NOTHING")
	}
	sb.WriteString(" RETURNING id, position, created_at")
	var inserted []insertedEvent
	if err := tx.Raw(sb.String(), args...).Scan(&inserted).Error; err != nil {
		return nil, err
	}
	return inserted, nil
}

// abort makes tx fail to commit (it raises an error in it) and returns err.
func abort(tx *gorm.DB, err error) error {
	if xerr := tx.Exec("DO $$ BEGIN RAISE EXCEPTION 'events: transaction aborted after a partial append'; END $$").Error; xerr == nil {
		return fmt.Errorf("%w (and the transaction could not be aborted)", err)
	}
	return err
}

// eventColumns are the columns a row struct scans into an Event.
const eventColumns = "tenant_id, id, stream_id, version, type, data, metadata, position, created_at"

// eventRow is an events row as read from the database.
type eventRow struct {
	TenantID  uuid.UUID
	ID        uuid.UUID
	StreamID  string
	Version   int64
	Type      string
	Data      []byte
	Metadata  []byte
	Position  int64
	CreatedAt time.Time
}

func (r eventRow) toEvent() (Event, error) {
	e := Event{
		ID: r.ID, TenantID: r.TenantID, StreamID: r.StreamID, Version: r.Version, Type: r.Type,
		Data: json.RawMessage(r.Data), Position: r.Position, CreatedAt: r.CreatedAt,
	}
	if len(r.Metadata) > 0 {
		if err := json.Unmarshal(r.Metadata, &e.Metadata); err != nil {
			return Event{}, fmt.Errorf("decode metadata of event %s: %w", r.ID, err)
		}
	}
	return e, nil
}

func toEvents(rows []eventRow) ([]Event, error) {
	out := make([]Event, 0, len(rows))
	for _, r := range rows {
		e, err := r.toEvent()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Load returns one stream of tenantID in version order; an unknown stream
// is empty, and so is every stream of a tenant tx is not bound to (row-level
// security). Naming the tenant routes the read to its shard on Citus.
func Load(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID, streamID string) (_ []Event, err error) {
	defer wrap(&err, "load stream %q", streamID)
	var rows []eventRow
	if err := tx.WithContext(ctx).Raw("SELECT "+eventColumns+" FROM events WHERE tenant_id = ? AND stream_id = ? ORDER BY version",
		tenantID, streamID).Scan(&rows).Error; err != nil {
		return nil, err
	}
	return toEvents(rows)
}

// List returns tenantID's events with position > after, in position
// order, up to limit (at most 1000; 0 means 100), only of types when given;
// none of a tenant tx is not bound to (row-level security). It reads what
// has committed so far; a reader that must see every event once, in order,
// subscribes to a Dispatcher instead.
func List(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID, after int64, limit int, types []string) (_ []Event, err error) {
	defer wrap(&err, "list events after %d", after)
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	return selectEvents(ctx, tx, "tenant_id = ? AND position > ?", []any{tenantID, after}, types, limit)
}

// selectEvents returns the tx tenant's events that match where (a condition
// on the events table with args for its placeholders), only of types when
// given, in position order, up to limit.
func selectEvents(ctx context.Context, tx *gorm.DB, where string, args []any, types []string, limit int) ([]Event, error) {
	q := "SELECT " + eventColumns + " FROM events WHERE " + where
	if len(types) > 0 {
		q += " AND type = ANY (?::text[])"
		args = append(args, db.TextArray(types))
	}
	q += " ORDER BY position LIMIT ?"
	args = append(args, limit)
	var rows []eventRow
	if err := tx.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return nil, err
	}
	return toEvents(rows)
}

type causeKey struct{}

// WithCause returns ctx in which appended events record cause as their
// causation and share its correlation id. The dispatcher sets it for its
// handlers.
func WithCause(ctx context.Context, cause Event) context.Context {
	return context.WithValue(ctx, causeKey{}, cause)
}

type actorKey struct{}

// withActor names the actor of appends made without a principal, such as a
// subscriber's.
func withActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// metadataFrom collects an append's metadata from ctx.
func metadataFrom(ctx context.Context) Metadata {
	md := Metadata{RequestID: identity.RequestID(ctx)}
	if p, ok := identity.FromContext(ctx); ok {
		md.Actor = p.Actor()
	} else if a, ok := ctx.Value(actorKey{}).(string); ok {
		md.Actor = a
	}
	if c, ok := ctx.Value(causeKey{}).(Event); ok {
		md.CausationID = c.ID.String()
		md.CorrelationID = c.Metadata.CorrelationID
		if md.CorrelationID == "" {
			md.CorrelationID = c.ID.String()
		}
		if md.RequestID == "" {
			md.RequestID = c.Metadata.RequestID
		}
		md.TraceParent = c.Metadata.TraceParent
	}
	return md
}

// wrap prefixes a non-nil *err with the formatted context.
func wrap(err *error, format string, args ...any) {
	if *err != nil {
		*err = fmt.Errorf("events: "+format+": %w", append(args, *err)...)
	}
}

// errorText cuts an error message to what a dead letter keeps.
func errorText(err error) string {
	s := err.Error()
	if len(s) > 4000 {
		s = s[:4000]
	}
	return strings.ToValidUTF8(s, "")
}
