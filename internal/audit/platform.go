package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/wait"
)

// PlatformLog is the platform audit log: what operators did through
// /admin/v1 (tenants created, changed or erased, billing exports, dead
// letters replayed or discarded). Its rows are chained like a tenant's trail
// (seq, prev_hash, hash computed by the same encoding with the nil tenant
// id), but each is chained as it is inserted, under a transaction-level
// advisory lock: operator actions are rare, so no sealer is needed. Only
// the platform scope reads or appends it (migration 0023).
type PlatformLog struct {
	db  *db.DB
	log *slog.Logger
	now func() time.Time
}

// NewPlatformLog returns the platform audit log on d.
func NewPlatformLog(d *db.DB, log *slog.Logger) *PlatformLog {
	return &PlatformLog{db: d, log: log, now: time.Now}
}

// platformChainLock is the advisory lock that serialises appends to the
// platform chain (one chain, rare writes).
const platformChainLock = 724102

// Record appends e, chained, in a transaction of its own, and returns the
// event. The actor, request id and origin come from ctx as for a tenant's
// entries. Transient failures are retried for up to writeTimeout.
func (l *PlatformLog) Record(ctx context.Context, e Entry) (ev Event, err error) {
	defer wrap(&err, "platform "+e.Action)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	if ev, err = newEvent(ctx, uuid.Nil, e, l.now()); err != nil {
		return Event{}, err
	}
	delay := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var sealed Event
		err = l.db.WithPlatform(ctx, func(tx *gorm.DB) error {
			var err error
			sealed, err = appendPlatform(tx.WithContext(ctx), ev)
			return err
		})
		switch {
		case err == nil:
			return sealed, nil
		case attempt > 1 && db.IsUniqueViolation(err, "platform_audit_events_id_key"):
			return ev, nil // an attempt reported failed had committed
		case !transient(err):
			return Event{}, err
		}
		l.log.DebugContext(ctx, "audit: writing a platform entry failed; retrying", "action", e.Action, "attempt", attempt, "err", err)
		if !wait.Sleep(ctx, delay) {
			return Event{}, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		delay = min(2*delay, time.Second)
	}
}

// appendPlatform links ev after the chain's head and inserts it.
func appendPlatform(tx *gorm.DB, ev Event) (Event, error) {
	if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", platformChainLock).Error; err != nil {
		return Event{}, fmt.Errorf("lock platform chain: %w", err)
	}
	var head []struct {
		Seq  int64
		Hash []byte
	}
	if err := tx.Raw("SELECT seq, hash FROM platform_audit_events ORDER BY seq DESC LIMIT 1").Scan(&head).Error; err != nil {
		return Event{}, fmt.Errorf("read platform chain head: %w", err)
	}
	ev.Seq, ev.PrevHash = 1, genesis
	if len(head) > 0 {
		ev.Seq, ev.PrevHash = head[0].Seq+1, head[0].Hash
	}
	ev.Hash = ev.computeHash()
	err := tx.Exec(`INSERT INTO platform_audit_events
		(seq, id, occurred_at, actor, action, resource, status, summary, request_id, ip, user_agent, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, nullif(?, '')::inet, ?, ?, ?)`,
		ev.Seq, ev.ID, ev.OccurredAt, ev.Actor, ev.Action, ev.Resource, ev.Status, string(ev.Summary),
		ev.RequestID, ev.IP, ev.UserAgent, ev.PrevHash, ev.Hash).Error
	if err != nil {
		return Event{}, fmt.Errorf("insert platform audit event: %w", err)
	}
	return ev, nil
}

// platformColumns reads a platform_audit_events row into eventRow.
const platformColumns = `seq, id, occurred_at, actor, action, resource, status,
	summary::text AS summary, request_id, coalesce(host(ip), '') AS ip, user_agent, prev_hash, hash`

// List returns up to limit platform events, newest first, with seq below
// before (0 for the newest).
func (l *PlatformLog) List(ctx context.Context, before int64, limit int) ([]Event, error) {
	var rows []eventRow
	err := l.db.WithPlatform(ctx, func(tx *gorm.DB) error {
		q := "SELECT " + platformColumns + " FROM platform_audit_events"
		args := []any{}
		if before > 0 {
			q += " WHERE seq < ?"
			args = append(args, before)
		}
		return tx.Raw(q+" ORDER BY seq DESC LIMIT ?", append(args, limit)...).Scan(&rows).Error
	})
	if err != nil {
		return nil, fmt.Errorf("list platform audit events: %w", err)
	}
	return toModels(rows), nil
}

// Verify recomputes the platform chain from seq 1 and reports the first
// row where it does not hold, as Verify does for a tenant's (TenantID is
// the nil id).
func (l *PlatformLog) Verify(ctx context.Context) (Report, error) {
	r, err := verifyChain(Report{TenantID: uuid.Nil}, func(after int64) ([]Event, error) {
		var rows []eventRow
		err := l.db.WithPlatform(ctx, func(tx *gorm.DB) error {
			return tx.Raw("SELECT "+platformColumns+" FROM platform_audit_events WHERE seq > ? ORDER BY seq LIMIT ?",
				after, verifyBatch).Scan(&rows).Error
		})
		return toModels(rows), err
	})
	if err != nil {
		return r, fmt.Errorf("verify platform audit chain: %w", err)
	}
	return r, nil
}
