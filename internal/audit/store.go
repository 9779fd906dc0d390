package audit

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// eventColumns reads an audit_events row into eventRow.
const eventColumns = `tenant_id, position, seq, id, occurred_at, actor, action, resource, status,
	summary::text AS summary, request_id, coalesce(host(ip), '') AS ip, user_agent, prev_hash, hash`

// eventRow is an audit_events row as read from the database; seq and the
// hashes are NULL until the row is sealed.
type eventRow struct {
	TenantID   uuid.UUID
	Position   int64
	Seq        *int64
	ID         uuid.UUID
	OccurredAt time.Time
	Actor      string
	Action     string
	Resource   string
	Status     int
	Summary    string
	RequestID  string
	IP         string
	UserAgent  string
	PrevHash   []byte
	Hash       []byte
}

func (r eventRow) toModel() Event {
	e := Event{
		TenantID: r.TenantID, Position: r.Position, ID: r.ID, OccurredAt: r.OccurredAt.UTC(),
		Actor: r.Actor, Action: r.Action, Resource: r.Resource, Status: r.Status,
		Summary: json.RawMessage(r.Summary), RequestID: r.RequestID, IP: canonicalIP(r.IP),
		UserAgent: r.UserAgent, PrevHash: r.PrevHash, Hash: r.Hash,
	}
	if r.Seq != nil {
		e.Seq = *r.Seq
	}
	return e
}

func toModels(rows []eventRow) []Event {
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = r.toModel()
	}
	return out
}

// insertColumns are the columns an append sets; next_append_position()
// (migrations/0025) draws position under the shared append lock, evaluated
// in the appending transaction (on Citus, on the coordinator), and seq,
// prev_hash and hash stay NULL for the sealer.
const insertColumns = `tenant_id, id, occurred_at, actor, action, resource, status, summary, request_id, ip, user_agent, position`

func insertArgs(e Event) []any {
	return []any{e.TenantID, e.ID, e.OccurredAt, e.Actor, e.Action, e.Resource, e.Status,
		string(e.Summary), e.RequestID, e.IP, e.UserAgent}
}

// insertEvent appends e, unsealed.
func insertEvent(tx *gorm.DB, e Event) error {
	err := tx.Exec(`INSERT INTO audit_events (`+insertColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, nullif(?, '')::inet, ?, next_append_position())`, insertArgs(e)...).Error
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}

// insertEventIfWrote appends e, unsealed, only if tx has written something
// already (it has a transaction id), and reports whether it did: one round
// trip for the check and the write (audit_append_if_wrote, migrations/0025).
func insertEventIfWrote(tx *gorm.DB, e Event) (bool, error) {
	var wrote bool
	err := tx.Raw(`SELECT audit_append_if_wrote(?::uuid, ?::uuid, ?::timestamptz, ?::text, ?::text, ?::text, ?::int,
		?::jsonb, ?::text, nullif(?::text, '')::inet, ?::text)`, insertArgs(e)...).Scan(&wrote).Error
	if err != nil {
		return false, fmt.Errorf("insert event: %w", err)
	}
	return wrote, nil
}

// head returns the seq and hash of the tenant's newest sealed event, or 0
// and the genesis hash for an empty chain.
func head(tx *gorm.DB, tenantID uuid.UUID) (int64, []byte, error) {
	var rows []struct {
		Seq  int64
		Hash []byte
	}
	err := tx.Raw("SELECT seq, hash FROM audit_events WHERE tenant_id = ? AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1", tenantID).
		Scan(&rows).Error
	if err != nil {
		return 0, nil, fmt.Errorf("read chain head: %w", err)
	}
	if len(rows) == 0 {
		return 0, genesis, nil
	}
	return rows[0].Seq, rows[0].Hash, nil
}

// chainPage returns up to limit sealed events after seq after, in seq order.
func chainPage(tx *gorm.DB, tenantID uuid.UUID, after int64, limit int) ([]Event, error) {
	var rows []eventRow
	err := tx.Raw("SELECT "+eventColumns+" FROM audit_events WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?",
		tenantID, after, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("read chain: %w", err)
	}
	return toModels(rows), nil
}

// unsealedPage returns up to limit of the tenant's unsealed events at or
// below position upto, in position order.
func unsealedPage(tx *gorm.DB, tenantID uuid.UUID, upto int64, limit int) ([]Event, error) {
	var rows []eventRow
	err := tx.Raw("SELECT "+eventColumns+` FROM audit_events
		WHERE tenant_id = ? AND hash IS NULL AND position <= ? ORDER BY position LIMIT ?`,
		tenantID, upto, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("read unsealed events: %w", err)
	}
	return toModels(rows), nil
}

// sealEvents stores the seq and hashes computed for evs, which must all be
// unsealed still: a row another sealer got to first fails the batch.
func sealEvents(tx *gorm.DB, tenantID uuid.UUID, evs []Event) error {
	ids := make(db.TextArray, len(evs))
	seqs := make(db.TextArray, len(evs))
	prevs := make(db.TextArray, len(evs))
	hashes := make(db.TextArray, len(evs))
	for i, e := range evs {
		ids[i], seqs[i] = e.ID.String(), strconv.FormatInt(e.Seq, 10)
		prevs[i], hashes[i] = hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.Hash)
	}
	res := tx.Exec(`UPDATE audit_events a
		SET seq = v.seq::bigint, prev_hash = decode(v.prev_hash, 'hex'), hash = decode(v.hash, 'hex')
		FROM unnest(?::text[], ?::text[], ?::text[], ?::text[]) AS v(id, seq, prev_hash, hash)
		WHERE a.tenant_id = ? AND a.id = v.id::uuid AND a.hash IS NULL`, ids, seqs, prevs, hashes, tenantID)
	if res.Error != nil {
		return fmt.Errorf("seal events: %w", res.Error)
	}
	if res.RowsAffected != int64(len(evs)) {
		return fmt.Errorf("seal events: sealed %d of %d rows (another sealer?)", res.RowsAffected, len(evs))
	}
	return nil
}

// unsealedStats returns how many of the tenant's rows are unsealed and how
// long the oldest of them has waited, by the database's clock.
func unsealedStats(tx *gorm.DB, tenantID uuid.UUID) (n int64, oldest time.Duration, err error) {
	var row struct {
		N   int64
		Age float64
	}
	err = tx.Raw(`SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(occurred_at)), 0)::float8 AS age
		FROM audit_events WHERE tenant_id = ? AND hash IS NULL`, tenantID).Scan(&row).Error
	if err != nil {
		return 0, 0, fmt.Errorf("read unsealed events: %w", err)
	}
	return row.N, time.Duration(row.Age * float64(time.Second)), nil
}

// unsealedTenants returns, across tenants, the tenants of up to limit
// unsealed rows at or below position upto, oldest row first, each once,
// leaving out the tenants in skip; full says limit rows were found.
func unsealedTenants(ctx context.Context, d *db.DB, upto int64, limit int, skip []uuid.UUID) (tenants []uuid.UUID, full bool, err error) {
	var rows []struct {
		TenantID uuid.UUID
		Position int64
	}
	skipped := make(db.TextArray, len(skip))
	for i, id := range skip {
		skipped[i] = id.String()
	}
	if err := d.Worker().Unscoped(ctx).Raw("SELECT tenant_id, position FROM audit_unsealed(?, ?, ?::text[]::uuid[])", upto, limit, skipped).
		Scan(&rows).Error; err != nil {
		return nil, false, fmt.Errorf("list unsealed events: %w", err)
	}
	seen := make(map[uuid.UUID]bool)
	for _, r := range rows {
		if !seen[r.TenantID] {
			seen[r.TenantID] = true
			tenants = append(tenants, r.TenantID)
		}
	}
	return tenants, len(rows) == limit, nil
}

// Filter selects events for List. Zero fields select everything.
type Filter struct {
	Actor string // exact
	// Action and Resource match exactly, or as a prefix when the matching
	// Prefix flag is set.
	Action         string
	ActionPrefix   bool
	Resource       string
	ResourcePrefix bool
	Since          time.Time // occurred_at at or after, when not zero
	Until          time.Time // occurred_at before, when not zero
	BeforePosition int64     // only position < BeforePosition (the cursor), when not 0
	Limit          int
}

// likePrefix is a LIKE pattern matching strings that start with p.
func likePrefix(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(p) + "%"
}

// listEvents returns up to f.Limit+1 events matching f, newest first.
func listEvents(tx *gorm.DB, tenantID uuid.UUID, f Filter) ([]Event, error) {
	q := tx.Table("audit_events").Select(eventColumns).Where("tenant_id = ?", tenantID)
	if f.Actor != "" {
		q = q.Where("actor = ?", f.Actor)
	}
	if f.Action != "" {
		if f.ActionPrefix {
			q = q.Where(`action LIKE ? ESCAPE '\'`, likePrefix(f.Action))
		} else {
			q = q.Where("action = ?", f.Action)
		}
	}
	if f.Resource != "" || f.ResourcePrefix {
		if f.ResourcePrefix {
			q = q.Where(`resource LIKE ? ESCAPE '\'`, likePrefix(f.Resource))
		} else {
			q = q.Where("resource = ?", f.Resource)
		}
	}
	if !f.Since.IsZero() {
		q = q.Where("occurred_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		q = q.Where("occurred_at < ?", f.Until)
	}
	if f.BeforePosition > 0 {
		q = q.Where("position < ?", f.BeforePosition)
	}
	var rows []eventRow
	if err := q.Order("position DESC").Limit(f.Limit + 1).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	return toModels(rows), nil
}

// ErrTenantNotFound means no tenant has the id or slug given.
var ErrTenantNotFound = errors.New("audit: no such tenant")

// listTenants lists tenants through the platform scope, in id order: all of
// them, or the one whose id or slug is ref.
func listTenants(ctx context.Context, d *db.DB, ref string) ([]TenantRef, error) {
	var out []TenantRef
	err := d.WithPlatform(ctx, func(tx *gorm.DB) error {
		q := tx.WithContext(ctx).Table("tenants").Select("id, slug").Order("id")
		if ref != "" {
			if id, err := uuid.Parse(ref); err == nil {
				q = q.Where("id = ?", id)
			} else {
				q = q.Where("slug = ?", strings.ToLower(ref))
			}
		}
		return q.Scan(&out).Error
	})
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	if ref != "" && len(out) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrTenantNotFound, ref)
	}
	return out, nil
}
