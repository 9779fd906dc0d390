package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
)

// StockLine asks to reserve Quantity of ProductID.
type StockLine struct {
	ProductID uuid.UUID
	Quantity  int64
}

// HeldStock is stock reserved for an order, with the product's price.
type HeldStock struct {
	ReservationID uuid.UUID
	ProductID     uuid.UUID
	SKU           string
	Quantity      int64
	UnitPrice     int64
	Currency      string
}

// Stock is what orders needs of inventory, inside the caller's transaction
// tx (scoped to tenantID). Reserve fails as a whole when a line cannot be
// covered; Commit and Release are idempotent.
type Stock interface {
	Reserve(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID, lines []StockLine, expiresAt time.Time) ([]HeldStock, error)
	Commit(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) error
	Release(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) error
}

// Options tune the service.
type Options struct {
	// ReservationTTL is how long a pending order holds its stock.
	ReservationTTL time.Duration
	// Now is the clock; time.Now by default.
	Now func() time.Time
	// Refunds refunds payments that succeed for cancelled orders; without
	// it the saga only logs them.
	Refunds Refunds
}

// Service runs the order use cases.
type Service struct {
	db    *db.DB
	stock Stock
	log   *slog.Logger
	ttl   time.Duration
	now   func() time.Time
	// refunds may be nil (see Options.Refunds).
	refunds Refunds
}

// NewService returns a Service.
func NewService(d *db.DB, stock Stock, log *slog.Logger, opts Options) *Service {
	if opts.ReservationTTL <= 0 {
		opts.ReservationTTL = 15 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{db: d, stock: stock, log: log, ttl: opts.ReservationTTL, now: opts.Now, refunds: opts.Refunds}
}

// Place validates the order, reserves its stock and appends order.placed
// and stock.reserved, all in one transaction: when any product lacks stock
// nothing is written (ErrInsufficientStock from the stock).
func (s *Service) Place(ctx context.Context, tenantID uuid.UUID, n NewOrder) (o Order, err error) {
	if err := n.Validate(); err != nil {
		return Order{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Order{}, fmt.Errorf("new order id: %w", err)
	}
	expires := s.now().UTC().Add(s.ttl).Truncate(time.Microsecond)
	lines := make([]StockLine, len(n.Items))
	for i, it := range n.Items {
		lines[i] = StockLine(it)
	}
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		held, err := s.stock.Reserve(ctx, tx, tenantID, id, lines, expires)
		if err != nil {
			return err
		}
		placed := Placed{OrderID: id, CustomerID: n.CustomerID, ReservationExpiresAt: expires}
		reserved := StockReserved{OrderID: id}
		for _, h := range held {
			if placed.Currency == "" {
				placed.Currency = h.Currency
			}
			if h.Currency != placed.Currency {
				return ErrMixedCurrencies
			}
			amount := h.UnitPrice * h.Quantity
			if h.UnitPrice != 0 && amount/h.UnitPrice != h.Quantity || placed.Total+amount < placed.Total {
				return errTotalOverflow
			}
			placed.Items = append(placed.Items, Item{ProductID: h.ProductID, SKU: h.SKU, Quantity: h.Quantity, UnitPrice: h.UnitPrice, Amount: amount})
			placed.Total += amount
			reserved.Reservations = append(reserved.Reservations, ReservedQuantity{ReservationID: h.ReservationID, ProductID: h.ProductID, Quantity: h.Quantity})
		}
		appended, err := events.Append(ctx, tx, tenantID, StreamID(id), 0,
			events.NewEvent{Type: EventPlaced, Data: placed}, events.NewEvent{Type: EventStockReserved, Data: reserved})
		if err != nil {
			return err
		}
		if o, err = Fold(appended); err != nil {
			return err
		}
		return project(tx, o)
	})
	if err != nil {
		return Order{}, fmt.Errorf("place order: %w", err)
	}
	return o, nil
}

// Get returns an order from the read model.
func (s *Service) Get(ctx context.Context, tenantID, id uuid.UUID) (Order, error) {
	return db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) (Order, error) {
		return getView(ofTenant(tx, tenantID), id, false)
	})
}

// List returns up to limit+1 orders after the given id, optionally of one
// status, from the read model.
func (s *Service) List(ctx context.Context, tenantID uuid.UUID, status Status, after uuid.UUID, limit int) ([]Order, error) {
	return db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) ([]Order, error) {
		return listViews(tx, tenantID, status, after, limit)
	})
}

// Events returns the order's event stream.
func (s *Service) Events(ctx context.Context, tenantID, id uuid.UUID) ([]events.Event, error) {
	return db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) ([]events.Event, error) {
		es, err := events.Load(ctx, tx, tenantID, StreamID(id))
		if err == nil && len(es) == 0 {
			err = ErrNotFound
		}
		return es, err
	})
}

// Cancel cancels a pending order at the customer's request and releases
// its stock.
func (s *Service) Cancel(ctx context.Context, tenantID, id uuid.UUID) (o Order, err error) {
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		o, err = s.cancel(ctx, tx, tenantID, id, ReasonCustomerRequest)
		return err
	})
	return o, err
}

// Lookup reads an order of tenantID inside tx (a transaction bound to that
// tenant), locking its read model row until tx ends, so a payment and a
// cancellation of one order are serialised. The tenant is named because
// Citus runs a FOR UPDATE only on one shard.
func (s *Service) Lookup(ctx context.Context, tx *gorm.DB, tenantID, id uuid.UUID) (Order, error) {
	return getView(ofTenant(tx.WithContext(ctx), tenantID), id, true)
}

// transition loads the order under a row lock, lets decide return the
// events to append (none: nothing to do), appends and projects them.
func (s *Service) transition(ctx context.Context, tx *gorm.DB, tenantID, id uuid.UUID, decide func(Order) ([]events.NewEvent, error)) (Order, error) {
	if _, err := getView(ofTenant(tx.WithContext(ctx), tenantID), id, true); err != nil {
		return Order{}, err
	}
	stream, err := events.Load(ctx, tx, tenantID, StreamID(id))
	if err != nil {
		return Order{}, err
	}
	o, err := Fold(stream)
	if err != nil {
		return Order{}, err
	}
	evs, err := decide(o)
	if err != nil || len(evs) == 0 {
		return o, err
	}
	appended, err := events.Append(ctx, tx, o.TenantID, StreamID(id), o.Version, evs...)
	if errors.Is(err, events.ErrVersionConflict) {
		return Order{}, ErrBusy
	}
	if err != nil {
		return Order{}, err
	}
	for _, e := range appended {
		if err := o.Apply(e); err != nil {
			return Order{}, err
		}
	}
	return o, project(tx, o)
}

func (s *Service) cancel(ctx context.Context, tx *gorm.DB, tenantID, id uuid.UUID, reason string) (Order, error) {
	return s.transition(ctx, tx, tenantID, id, func(o Order) ([]events.NewEvent, error) {
		if o.Status != Pending {
			return nil, ErrNotPending
		}
		if err := s.stock.Release(ctx, tx, tenantID, id); err != nil {
			return nil, err
		}
		return []events.NewEvent{{Type: EventCancelled, Data: CancelledEvent{OrderID: id, Reason: reason}}}, nil
	})
}

// complete marks a pending order completed and commits its stock. An order
// already completed is left alone (the saga may see an event twice). An
// order cancelled meanwhile stays cancelled, its stock released, and the
// payment is refunded (Refunds), in the saga's transaction.
func (s *Service) complete(ctx context.Context, tx *gorm.DB, tenantID, id, paymentID uuid.UUID) (Order, error) {
	return s.transition(ctx, tx, tenantID, id, func(o Order) ([]events.NewEvent, error) {
		switch o.Status {
		case Completed:
			return nil, nil
		case Cancelled:
			if s.refunds == nil {
				s.log.WarnContext(ctx, "saga: payment succeeded for a cancelled order; it needs a refund",
					"tenant_id", tenantID, "order_id", id, "payment_id", paymentID, "cancellation_reason", o.CancellationReason)
				return nil, nil
			}
			if err := s.refunds.RefundCancelledOrder(ctx, tx, tenantID, paymentID, o.CancellationReason); err != nil {
				return nil, fmt.Errorf("refund payment %s of cancelled order %s: %w", paymentID, id, err)
			}
			s.log.InfoContext(ctx, "saga: payment succeeded for a cancelled order; refund requested",
				"tenant_id", tenantID, "order_id", id, "payment_id", paymentID, "cancellation_reason", o.CancellationReason)
			return nil, nil
		}
		if err := s.stock.Commit(ctx, tx, tenantID, id); err != nil {
			return nil, err
		}
		return []events.NewEvent{{Type: EventCompleted, Data: CompletedEvent{OrderID: id, PaymentID: paymentID}}}, nil
	})
}
