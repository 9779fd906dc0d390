package orders

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/wait"
)

// Payment events the saga reacts to. Only a decline cancels an order: a
// payment that failed because the gateway was unavailable leaves the order
// pending, to be paid again or to expire.
const (
	EventPaymentSucceeded = "payment.succeeded"
	EventPaymentFailed    = "payment.failed"
	declined              = "declined"
)

// paymentOutcome is the part of a payment event the saga reads.
type paymentOutcome struct {
	OrderID   uuid.UUID `json:"order_id"`
	PaymentID uuid.UUID `json:"payment_id"`
	Reason    string    `json:"reason"`
}

// Refunds gives back a payment that succeeded for an order that had
// already been cancelled (by the customer, or by the sweeper when its
// reservation expired), so that the customer does not pay for nothing. It
// works inside tx, the saga's transaction for the payment.succeeded event,
// and must be idempotent: the saga may see the event again. The payments
// module satisfies it; internal/app passes it in through Options.
type Refunds interface {
	RefundCancelledOrder(ctx context.Context, tx *gorm.DB, tenantID, paymentID uuid.UUID, cancellationReason string) error
}

// Subscriber is where the saga registers its handler.
type Subscriber interface {
	Subscribe(subscriber string, types []string, h events.Handler)
}

// SagaSubscriber is the saga's checkpoint name in the dispatcher.
const SagaSubscriber = "orders-saga"

// Subscribe registers the saga with the event dispatcher.
func (s *Service) Subscribe(d Subscriber) {
	d.Subscribe(SagaSubscriber, []string{EventPaymentSucceeded, EventPaymentFailed}, s.onPayment)
}

// onPayment completes or cancels the order of a payment event, inside the
// dispatcher's transaction (which also records the checkpoint).
func (s *Service) onPayment(ctx context.Context, tx *gorm.DB, e events.Event) error {
	var p paymentOutcome
	if err := json.Unmarshal(e.Data, &p); err != nil {
		return fmt.Errorf("decode %s %s: %w", e.Type, e.ID, err)
	}
	ctx = events.WithCause(ctx, e)
	var err error
	switch {
	case e.Type == EventPaymentSucceeded:
		_, err = s.complete(ctx, tx, e.TenantID, p.OrderID, p.PaymentID)
	case e.Type == EventPaymentFailed && p.Reason == declined:
		_, err = s.cancel(ctx, tx, e.TenantID, p.OrderID, ReasonPaymentDeclined)
		if errors.Is(err, ErrNotPending) {
			err = nil // already completed or cancelled: nothing to compensate
		}
	}
	if errors.Is(err, ErrNotFound) {
		s.log.WarnContext(ctx, "saga: payment event for an unknown order", "event_id", e.ID, "order_id", p.OrderID)
		return nil
	}
	return err
}

// SweepExpired cancels pending orders whose reservations expired, releasing
// their stock, and returns how many it cancelled. Several replicas may
// sweep at once: each order is cancelled under its row lock, once.
func (s *Service) SweepExpired(ctx context.Context, limit int) (int, error) {
	expired, err := listExpired(s.db.Worker().Unscoped(ctx), s.now().UTC(), limit)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, x := range expired {
		err := s.db.WithTenant(ctx, x.TenantID, func(tx *gorm.DB) error {
			_, err := s.transition(ctx, tx, x.TenantID, x.OrderID, func(o Order) ([]events.NewEvent, error) {
				if o.Status != Pending || !o.ReservationExpiresAt.Before(s.now()) {
					return nil, nil // another replica, or a payment, got there first
				}
				if err := s.stock.Release(ctx, tx, x.TenantID, x.OrderID); err != nil {
					return nil, err
				}
				n++
				return []events.NewEvent{{Type: EventCancelled, Data: CancelledEvent{OrderID: x.OrderID, Reason: ReasonReservationExpired}}}, nil
			})
			return err
		})
		if err != nil {
			return n, fmt.Errorf("expire order %s: %w", x.OrderID, err)
		}
	}
	return n, nil
}

// RunSweeper sweeps expired orders every interval until ctx ends.
func (s *Service) RunSweeper(ctx context.Context, every time.Duration) {
	wait.Every(ctx, every, func() {
		if n, err := s.SweepExpired(ctx, 500); err != nil {
			if ctx.Err() == nil {
				s.log.ErrorContext(ctx, "orders: sweeping expired reservations failed", "err", err)
			}
		} else if n > 0 {
			s.log.InfoContext(ctx, "orders: cancelled orders with expired reservations", "count", n)
		}
	})
}

// Rebuild recreates the tenant's read model from the order events and
// returns how many orders it projected.
func (s *Service) Rebuild(ctx context.Context, tenantID uuid.UUID) (n int, err error) {
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		if err := tx.Exec(`DELETE FROM order_views WHERE tenant_id = ?`, tenantID).Error; err != nil {
			return fmt.Errorf("clear order_views: %w", err)
		}
		orders := map[string]*Order{}
		var ids []string
		types := []string{EventPlaced, EventStockReserved, EventCompleted, EventCancelled}
		for after := int64(0); ; {
			batch, err := events.List(ctx, tx, tenantID, after, 1000, types)
			if err != nil {
				return err
			}
			if len(batch) == 0 {
				break
			}
			for _, e := range batch {
				o, ok := orders[e.StreamID]
				if !ok {
					o = &Order{}
					orders[e.StreamID] = o
					ids = append(ids, e.StreamID)
				}
				if err := o.Apply(e); err != nil {
					return fmt.Errorf("fold %s: %w", e.StreamID, err)
				}
				after = e.Position
			}
		}
		for _, id := range ids {
			if err := project(tx, *orders[id]); err != nil {
				return err
			}
		}
		n = len(ids)
		return nil
	})
	return n, err
}
