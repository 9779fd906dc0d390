package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/fault"
)

// DeadLetter is an event a subscriber gave up on after its retries. The
// subscriber moved on; Replay runs the handler on it again.
type DeadLetter struct {
	ID         uuid.UUID `json:"id"`
	TenantID   uuid.UUID `json:"tenant_id"`
	Subscriber string    `json:"subscriber"`
	Event      Event     `json:"event"`
	Error      string    `json:"error"`    // the last failure
	Attempts   int       `json:"attempts"` // failed attempts so far, replays included
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// ErrDeadLetterNotFound means the tenant has no such dead letter (or it was
// replayed already).
var ErrDeadLetterNotFound error = fault.New(fault.NotFound, "no such dead letter")

// ErrHandlerFailed wraps the error of a subscriber that failed again on a
// replayed dead letter.
var ErrHandlerFailed = errors.New("handler failed again")

// park records e as a dead letter of s and moves s's checkpoint past it, in
// one transaction of e's tenant.
func (d *Dispatcher) park(ctx context.Context, s *subscription, from int64, e Event, attempts int, cause error) error {
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("dead letter id: %w", err)
	}
	err = d.db.WithTenant(ctx, e.TenantID, func(tx *gorm.DB) error {
		if err := claim(tx, s.name, from); err != nil {
			return err
		}
		if err := tx.Exec(`INSERT INTO dead_letters (tenant_id, id, subscriber, event_id, position, error, attempts)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, e.TenantID, id, s.name, e.ID, e.Position, errorText(cause), attempts).Error; err != nil {
			return fmt.Errorf("insert dead letter: %w", err)
		}
		return advanceTo(tx, s.name, e.Position)
	})
	if err != nil {
		return fmt.Errorf("park event %s for %s: %w", e.ID, s.name, err)
	}
	d.log.ErrorContext(ctx, "events: parked an event its subscriber keeps failing on", "subscriber", s.name,
		"event_id", e.ID, "type", e.Type, "tenant_id", e.TenantID, "attempts", attempts, "err", cause)
	if d.opts.OnPark != nil {
		d.opts.OnPark(s.name)
	}
	return nil
}

// deadLetterRow is a dead letter joined with its event.
type deadLetterRow struct {
	ID         uuid.UUID
	TenantID   uuid.UUID
	Subscriber string
	Error      string
	Attempts   int
	CreatedAt  time.Time
	UpdatedAt  time.Time

	EventID        uuid.UUID
	StreamID       string
	Version        int64
	Type           string
	Data           []byte
	Metadata       []byte
	Position       int64
	EventCreatedAt time.Time
}

const deadLetterQuery = `
	SELECT d.id, d.tenant_id, d.subscriber, d.error, d.attempts, d.created_at, d.updated_at,
	       e.id AS event_id, e.stream_id, e.version, e.type, e.data, e.metadata, e.position,
	       e.created_at AS event_created_at
	FROM dead_letters d JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id`

// findDeadLetter reads dead letter id with its event; lock takes the dead
// letter FOR UPDATE. ErrDeadLetterNotFound when the tenant has none.
func findDeadLetter(tx *gorm.DB, id uuid.UUID, lock bool) (deadLetterRow, error) {
	q := deadLetterQuery + " WHERE d.id = ?"
	if lock {
		q += " FOR UPDATE OF d"
	}
	var rows []deadLetterRow
	if err := tx.Raw(q, id).Scan(&rows).Error; err != nil {
		return deadLetterRow{}, err
	}
	if len(rows) == 0 {
		return deadLetterRow{}, ErrDeadLetterNotFound
	}
	return rows[0], nil
}

func (r deadLetterRow) toModel() (DeadLetter, error) {
	e, err := eventRow{
		TenantID: r.TenantID, ID: r.EventID, StreamID: r.StreamID, Version: r.Version, Type: r.Type,
		Data: r.Data, Metadata: r.Metadata, Position: r.Position, CreatedAt: r.EventCreatedAt,
	}.toEvent()
	if err != nil {
		return DeadLetter{}, err
	}
	return DeadLetter{
		ID: r.ID, TenantID: r.TenantID, Subscriber: r.Subscriber, Event: e,
		Error: r.Error, Attempts: r.Attempts, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}, nil
}

// DeadLetters returns the tenant's dead letters, of every subscriber, in
// event position order.
func (d *Dispatcher) DeadLetters(ctx context.Context, tenantID uuid.UUID) ([]DeadLetter, error) {
	var rows []deadLetterRow
	err := d.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		return tx.Raw(deadLetterQuery + " ORDER BY d.position, d.subscriber").Scan(&rows).Error
	})
	if err != nil {
		return nil, fmt.Errorf("events: dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(rows))
	for _, r := range rows {
		dl, err := r.toModel()
		if err != nil {
			return nil, fmt.Errorf("events: dead letters: %w", err)
		}
		out = append(out, dl)
	}
	return out, nil
}

// Replay runs the parked event's subscriber on it again, in a transaction of
// the tenant; on success the dead letter goes, with the handler's effects
// committed. On failure it stays, its attempts and error updated, and the
// handler's error is returned. The subscriber must be registered on d. A
// replayed event arrives after later events of its stream: handlers must
// tolerate that.
func (d *Dispatcher) Replay(ctx context.Context, tenantID, deadLetterID uuid.UUID) (err error) {
	defer wrap(&err, "replay dead letter %s", deadLetterID)
	var handlerErr error
	err = d.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		row, err := findDeadLetter(tx, deadLetterID, true)
		if err != nil {
			return err
		}
		dl, err := row.toModel()
		if err != nil {
			return err
		}
		d.mu.Lock()
		s := d.subscription(dl.Subscriber)
		d.mu.Unlock()
		if s == nil {
			return fmt.Errorf("subscriber %q is not registered on this dispatcher", dl.Subscriber)
		}
		// A savepoint: a failing handler leaves tx usable for the bookkeeping.
		handlerErr = tx.Transaction(func(sp *gorm.DB) error { return runHandler(ctx, sp, s, dl.Event) })
		if handlerErr != nil {
			if ctx.Err() != nil {
				return handlerErr
			}
			return tx.Exec(`UPDATE dead_letters SET attempts = attempts + 1, error = ?, updated_at = now() WHERE id = ?`,
				errorText(handlerErr), deadLetterID).Error
		}
		return tx.Exec("DELETE FROM dead_letters WHERE id = ?", deadLetterID).Error
	})
	if err != nil {
		return err
	}
	if handlerErr != nil {
		return fmt.Errorf("%w: %w", ErrHandlerFailed, handlerErr)
	}
	return nil
}

// DeadLetterFilter selects dead letters across tenants, for the operator:
// of one subscriber and one tenant when set, after a dead letter id.
type DeadLetterFilter struct {
	Subscriber string
	TenantID   uuid.UUID // uuid.Nil for every tenant
	After      uuid.UUID // uuid.Nil for the first page
	Limit      int
}

// DeadLetterSummary is a dead letter without its event's data, as the
// operator's list shows it.
type DeadLetterSummary struct {
	ID         uuid.UUID `json:"id"`
	TenantID   uuid.UUID `json:"tenant_id"`
	Subscriber string    `json:"subscriber"`
	EventID    uuid.UUID `json:"event_id"`
	EventType  string    `json:"event_type"`
	Error      string    `json:"error"`
	Attempts   int       `json:"attempts"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// DeadLetterPage lists dead letters of every tenant (or f's), oldest first,
// through the worker role's dead_letters_page function (migration 0023):
// the operator's view, never a tenant's.
func (d *Dispatcher) DeadLetterPage(ctx context.Context, f DeadLetterFilter) ([]DeadLetterSummary, error) {
	var rows []DeadLetterSummary
	err := d.db.Worker().Unscoped(ctx).Raw(`SELECT tenant_id, id, subscriber, event_id, event_type, error, attempts, created_at, updated_at
		FROM dead_letters_page(?, ?, ?, ?)`, nullIfEmpty(f.Subscriber), nullIfNil(f.TenantID), nullIfNil(f.After), f.Limit).
		Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("events: list dead letters: %w", err)
	}
	return rows, nil
}

// deadLetterTenant returns the tenant of dead letter id, for the operator's
// routes by id; ErrDeadLetterNotFound when there is none.
func (d *Dispatcher) deadLetterTenant(ctx context.Context, id uuid.UUID) (uuid.UUID, error) {
	var rows []struct{ TenantID uuid.UUID }
	err := d.db.Worker().Unscoped(ctx).Raw("SELECT t AS tenant_id FROM dead_letter_tenant(?) t WHERE t IS NOT NULL", id).
		Scan(&rows).Error
	if err != nil {
		return uuid.Nil, fmt.Errorf("events: find dead letter %s: %w", id, err)
	}
	if len(rows) == 0 {
		return uuid.Nil, ErrDeadLetterNotFound
	}
	return rows[0].TenantID, nil
}

// DeadLetter returns one dead letter with its event, whatever its tenant
// (the operator's view).
func (d *Dispatcher) DeadLetter(ctx context.Context, id uuid.UUID) (DeadLetter, error) {
	return d.operatorDeadLetter(ctx, id, false)
}

// ReplayDeadLetter is Replay for the operator, who knows the dead letter
// by id only; it returns the dead letter's tenant.
func (d *Dispatcher) ReplayDeadLetter(ctx context.Context, id uuid.UUID) (uuid.UUID, error) {
	tenantID, err := d.deadLetterTenant(ctx, id)
	if err != nil {
		return uuid.Nil, err
	}
	return tenantID, d.Replay(ctx, tenantID, id)
}

// DiscardDeadLetter removes a dead letter without running its subscriber:
// the operator decided the event needs no handling. It returns the dead
// letter as it was.
func (d *Dispatcher) DiscardDeadLetter(ctx context.Context, id uuid.UUID) (DeadLetter, error) {
	return d.operatorDeadLetter(ctx, id, true)
}

// operatorDeadLetter reads dead letter id with its event, whatever its
// tenant, and with discard deletes it in the same transaction (the row
// locked meanwhile).
func (d *Dispatcher) operatorDeadLetter(ctx context.Context, id uuid.UUID, discard bool) (DeadLetter, error) {
	tenantID, err := d.deadLetterTenant(ctx, id)
	if err != nil {
		return DeadLetter{}, err
	}
	var row deadLetterRow
	err = d.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
		if row, err = findDeadLetter(tx, id, discard); err != nil || !discard {
			return err
		}
		return tx.Exec("DELETE FROM dead_letters WHERE id = ?", id).Error
	})
	if err != nil {
		verb := "read"
		if discard {
			verb = "discard"
		}
		return DeadLetter{}, fmt.Errorf("events: %s dead letter %s: %w", verb, id, err)
	}
	return row.toModel()
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullIfNil(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}
