package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/inventory"
	"github.com/tenantd/tenantd/middleware"
	"github.com/tenantd/tenantd/orders"
	"github.com/tenantd/tenantd/payments"
)

// The adapters below let modules talk through the small interfaces they
// declare, without importing each other.

// stock lets orders reserve, commit and release inventory.
type stock struct{ inv *inventory.Service }

func (s stock) Reserve(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID, lines []orders.StockLine, expiresAt time.Time) ([]orders.HeldStock, error) {
	in := make([]inventory.Line, len(lines))
	for i, l := range lines {
		in[i] = inventory.Line(l)
	}
	held, err := s.inv.Reserve(ctx, tx, tenantID, orderID, in, expiresAt)
	if err != nil {
		return nil, err
	}
	out := make([]orders.HeldStock, len(held))
	for i, h := range held {
		out[i] = orders.HeldStock{ReservationID: h.ID, ProductID: h.ProductID, SKU: h.SKU, Quantity: h.Quantity, UnitPrice: h.UnitPrice, Currency: h.Currency}
	}
	return out, nil
}

func (s stock) Commit(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) error {
	return s.inv.Commit(ctx, tx, tenantID, orderID)
}

func (s stock) Release(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) error {
	return s.inv.Release(ctx, tx, tenantID, orderID)
}

// payable lets payments read the order it charges.
type payable struct{ orders *orders.Service }

func (p payable) PaymentTarget(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) (payments.Target, error) {
	o, err := p.orders.Lookup(ctx, tx, tenantID, orderID)
	if errors.Is(err, orders.ErrNotFound) {
		return payments.Target{}, payments.ErrOrderNotFound
	}
	if err != nil {
		return payments.Target{}, err
	}
	return payments.Target{Status: string(o.Status), Total: o.Total, Currency: o.Currency}, nil
}

// refunds lets the order saga refund a payment that succeeded for an order
// cancelled meanwhile. The payments service is built after the orders
// service that needs this, so the adapter reaches it through the App.
type refunds struct{ app *App }

func (r refunds) RefundCancelledOrder(ctx context.Context, tx *gorm.DB, tenantID, paymentID uuid.UUID, cancellationReason string) error {
	return r.app.Payments.RefundCancelledOrder(ctx, tx, tenantID, paymentID, cancellationReason)
}

// sagaOutcomes counts finished orders for the saga metric: once per event,
// on the replica whose delivery committed. The handler runs inside the
// dispatcher's transaction, which may still roll back (a failed commit, a
// checkpoint another worker moved) and the event be delivered again, so the
// count is made after the transaction commits (db.AfterCommit), never in
// the handler.
func sagaOutcomes(m *obs.Metrics) events.Handler {
	return func(_ context.Context, tx *gorm.DB, e events.Event) error {
		outcome := "completed"
		if e.Type == orders.EventCancelled {
			var c orders.CancelledEvent
			if err := json.Unmarshal(e.Data, &c); err != nil {
				return fmt.Errorf("decode %s: %w", e.Type, err)
			}
			outcome = "cancelled_" + c.Reason
		}
		if !db.AfterCommit(tx, func() { m.SagaOutcomes.WithLabelValues(outcome).Inc() }) {
			return errors.New("saga metric: the handler's transaction is not a db transaction")
		}
		return nil
	}
}

// rateLimits lets the rate limit middleware ask billing's limits.
type rateLimits struct{ l *billing.Limits }

func (r rateLimits) AllowRequest(ctx context.Context, tenantID uuid.UUID, plan string) (middleware.RateLimitState, bool, error) {
	s, known, err := r.l.AllowRequest(ctx, tenantID, plan)
	return middleware.RateLimitState(s), known, err
}
