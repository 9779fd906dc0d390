package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// eventColumns reads an events row into eventRow.
const eventColumns = `tenant_id, seq, id, occurred_at, actor, action, resource, status,
	summary::text AS summary, request_id, coalesce(host(ip), '') AS ip, user_agent, prev_hash, hash`

// eventRow is an audit_events row as read from the database.
type eventRow struct {
	TenantID   uuid.UUID
	Seq        int64
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
	return Event{
		TenantID: r.TenantID, Seq: r.Seq, ID: r.ID, OccurredAt: r.OccurredAt.UTC(),
		Actor: r.Actor, Action: r.Action, Resource: r.Resource, Status: r.Status,
		Summary: json.RawMessage(r.Summary), RequestID: r.RequestID, IP: canonicalIP(r.IP),
		UserAgent: r.UserAgent, PrevHash: r.PrevHash, Hash: r.Hash,
	}
}

func toModels(rows []eventRow) []Event {
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = r.toModel()
	}
	return out
}

// head returns the seq and hash of the tenant's newest event, or 0 and the
// genesis hash for an empty chain.
func head(tx *gorm.DB, tenantID uuid.UUID) (int64, []byte, error) {
	var rows []struct {
		Seq  int64
		Hash []byte
	}
	err := tx.Raw("SELECT seq, hash FROM audit_events WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1", tenantID).
		Scan(&rows).Error
	if err != nil {
		return 0, nil, fmt.Errorf("read chain head: %w", err)
	}
	if len(rows) == 0 {
		return 0, genesis, nil
	}
	return rows[0].Seq, rows[0].Hash, nil
}

func insertEvent(tx *gorm.DB, e Event) error {
	err := tx.Exec(`INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor, action, resource, status,
			summary, request_id, ip, user_agent, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, nullif(?, '')::inet, ?, ?, ?)`,
		e.TenantID, e.Seq, e.ID, e.OccurredAt, e.Actor, e.Action, e.Resource, e.Status,
		string(e.Summary), e.RequestID, e.IP, e.UserAgent, e.PrevHash, e.Hash).Error
	if err != nil {
		return fmt.Errorf("insert event %d: %w", e.Seq, err)
	}
	return nil
}

// chainPage returns up to limit events after seq after, in seq order.
func chainPage(tx *gorm.DB, tenantID uuid.UUID, after int64, limit int) ([]Event, error) {
	var rows []eventRow
	err := tx.Raw("SELECT "+eventColumns+" FROM audit_events WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?",
		tenantID, after, limit).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("read chain: %w", err)
	}
	return toModels(rows), nil
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
	BeforeSeq      int64     // only seq < BeforeSeq (the cursor), when not 0
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
	if f.BeforeSeq > 0 {
		q = q.Where("seq < ?", f.BeforeSeq)
	}
	var rows []eventRow
	if err := q.Order("seq DESC").Limit(f.Limit + 1).Scan(&rows).Error; err != nil {
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
