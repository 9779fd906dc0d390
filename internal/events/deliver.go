package events

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/wait"
)

// errLeaseLost means another worker moved this subscriber's checkpoint: this
// one must reload it (and, with leases, should not be running at all).
var errLeaseLost = errors.New("events: checkpoint moved by another worker")

// batch reads up to limit events in (after, upto] of types, across tenants.
func (d *Dispatcher) batch(ctx context.Context, after, upto int64, limit int, types []string) ([]Event, error) {
	var ts any
	if len(types) > 0 {
		ts = db.TextArray(types)
	}
	var rows []eventRow
	if err := d.db.Worker().Unscoped(ctx).Raw("SELECT "+eventColumns+" FROM events_dispatch_batch(?, ?, ?, ?::text[])",
		after, upto, limit, ts).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("read events after %d: %w", after, err)
	}
	return toEvents(rows)
}

// moveCheckpoint moves subscriber's checkpoint from `from` to `to`, if no
// other worker moved it.
func (d *Dispatcher) moveCheckpoint(ctx context.Context, subscriber string, from, to int64) error {
	res := d.db.Unscoped(ctx).Exec(`UPDATE event_checkpoints SET position = ?, updated_at = now()
		WHERE subscriber = ? AND position = ?`, to, subscriber, from)
	if res.Error != nil {
		return fmt.Errorf("move checkpoint to %d: %w", to, res.Error)
	}
	if res.RowsAffected != 1 {
		return errLeaseLost
	}
	return nil
}

// claim locks subscriber's checkpoint row in tx and checks it still reads
// from. Two workers for one subscriber (a lease lost to a broken connection)
// thus serialise here, and the later one backs off instead of handling the
// event again.
func claim(tx *gorm.DB, subscriber string, from int64) error {
	var cp []int64
	if err := tx.Raw("SELECT position FROM event_checkpoints WHERE subscriber = ? FOR UPDATE", subscriber).Scan(&cp).Error; err != nil {
		return fmt.Errorf("lock checkpoint: %w", err)
	}
	if len(cp) != 1 || cp[0] != from {
		return errLeaseLost
	}
	return nil
}

// advanceTo records in tx that subscriber is done up to position.
func advanceTo(tx *gorm.DB, subscriber string, position int64) error {
	if err := tx.Exec("UPDATE event_checkpoints SET position = ?, updated_at = now() WHERE subscriber = ?",
		position, subscriber).Error; err != nil {
		return fmt.Errorf("record checkpoint: %w", err)
	}
	return nil
}

// attemptError is a failed attempt at handling an event: the handler failed,
// or its transaction did not commit. It counts towards MaxAttempts.
type attemptError struct{ err error }

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// deliver handles e for s (whose checkpoint reads from), retrying with
// backoff and parking e as a dead letter after MaxAttempts failures. It
// returns an error only when it could not do either.
func (d *Dispatcher) deliver(ctx context.Context, s *subscription, from int64, e Event) error {
	log := d.log.With("subscriber", s.name, "tenant_id", e.TenantID, "event_id", e.ID, "type", e.Type, "position", e.Position)
	for attempt := 1; ; attempt++ {
		err := d.handleOnce(ctx, s, from, e)
		if err == nil {
			return nil
		}
		var ae *attemptError
		if ctx.Err() != nil || !errors.As(err, &ae) {
			return err
		}
		if attempt >= d.opts.MaxAttempts {
			if err := d.park(ctx, s, from, e, attempt, ae.err); err != nil {
				return err
			}
			log.Error("events: handler failed; event parked as a dead letter", "attempts", attempt, "err", ae.err)
			return nil
		}
		log.Warn("events: handler failed; retrying", "attempt", attempt, "err", ae.err)
		if !wait.Sleep(ctx, d.opts.Backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// handleOnce runs s's handler on e and records the checkpoint, in one
// transaction of e's tenant.
func (d *Dispatcher) handleOnce(ctx context.Context, s *subscription, from int64, e Event) error {
	claimed := false
	err := d.db.WithTenant(ctx, e.TenantID, func(tx *gorm.DB) error {
		claimed = false // WithTenant may retry the transaction
		if err := claim(tx, s.name, from); err != nil {
			return err
		}
		claimed = true
		if err := runHandler(ctx, tx, s, e); err != nil {
			return err
		}
		return advanceTo(tx, s.name, e.Position)
	})
	if err != nil && claimed {
		return &attemptError{err}
	}
	return err
}

// runHandler calls s's handler with e as the cause, turning a panic into an
// error.
func runHandler(ctx context.Context, tx *gorm.DB, s *subscription, e Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	hctx := WithCause(withActor(ctx, "subscriber:"+s.name), e)
	return s.h(hctx, tx, e)
}

// deliverBatch handles batch for s (whose checkpoint reads from) in one
// transaction: the events grouped by tenant, in order of first appearance
// (each tenant's events stay in position order), the tenant switched
// between groups, and the checkpoint moved past the last event. It reports
// false, with no error, when the batch failed in a way that one-at-a-time
// delivery should retry (the handler failed, or the commit did).
func (d *Dispatcher) deliverBatch(ctx context.Context, s *subscription, from int64, batch []Event) (bool, error) {
	var (
		order  []uuid.UUID
		groups = make(map[uuid.UUID][]Event)
	)
	for _, e := range batch {
		if _, ok := groups[e.TenantID]; !ok {
			order = append(order, e.TenantID)
		}
		groups[e.TenantID] = append(groups[e.TenantID], e)
	}
	claimed := false
	err := d.db.WithTenant(ctx, order[0], func(tx *gorm.DB) error {
		claimed = false // WithTenant may retry the transaction
		if err := claim(tx, s.name, from); err != nil {
			return err
		}
		claimed = true
		for i, tenantID := range order {
			if i > 0 {
				if err := db.SetTenant(tx, tenantID); err != nil {
					return err
				}
			}
			if err := runBatchHandler(ctx, tx, s, groups[tenantID]); err != nil {
				return err
			}
		}
		if len(order) > 1 {
			// WithTenant's commit hook expects the tenant it began with.
			if err := db.SetTenant(tx, order[0]); err != nil {
				return err
			}
		}
		return advanceTo(tx, s.name, batch[len(batch)-1].Position)
	})
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil || !claimed:
		return false, err
	default:
		d.log.Warn("events: batch failed; delivering its events one at a time", "subscriber", s.name,
			"events", len(batch), "err", err)
		return false, nil
	}
}

// runBatchHandler calls s's batch handler, turning a panic into an error.
func runBatchHandler(ctx context.Context, tx *gorm.DB, s *subscription, evs []Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return s.batch(withActor(ctx, "subscriber:"+s.name), tx, evs)
}
