package payments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/fault"
)

// Orders is what payments needs of orders: the order's state, read inside
// tx (a transaction scoped to the tenant). An order the tenant does not
// have gives an error wrapping a fault.NotFound error, such as
// ErrOrderNotFound.
type Orders interface {
	PaymentTarget(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) (Target, error)
}

// Service runs the payment and refund use cases. Every database step works
// inside one db.WithTenant transaction, so it sees only the tenant's rows.
type Service struct {
	db      *db.DB
	orders  Orders
	gateway Gateway
	// after is how long a payment may stay processing, or a refund stay
	// with the request that sends it, before the reconciler takes over.
	after time.Duration
	// writeFor bounds how long writing the gateway's answer is retried.
	writeFor time.Duration
	// beforeWrite, when set (by tests), runs before every attempt to
	// write a gateway's answer; an error fails the attempt.
	beforeWrite func(ctx context.Context) error
}

// Defaults of the Service's options.
const (
	// DefaultReconcileAfter is how long a payment may stay processing
	// before the reconciler asks the gateway about it. It must exceed the
	// longest a charge can take (the Resilient's MaxElapsed plus one
	// AttemptTimeout, 5s by default): a charge the gateway has not seen by
	// then is failed, so it must not be still on its way.
	DefaultReconcileAfter = 10 * time.Second
	// DefaultWriteFor bounds the retries of writing a gateway's answer
	// while the database is unreachable; after it the reconciler owns the
	// payment or refund.
	DefaultWriteFor = 2 * time.Minute
)

// Option tunes a Service.
type Option func(*Service)

// WithReconcileAfter sets how long a payment may stay processing, and a
// refund stay with its request, before the reconciler takes it over
// (default DefaultReconcileAfter).
func WithReconcileAfter(d time.Duration) Option {
	return func(s *Service) { s.after = d }
}

// WithWriteFor sets how long writing a gateway's answer is retried
// (default DefaultWriteFor).
func WithWriteFor(d time.Duration) Option {
	return func(s *Service) { s.writeFor = d }
}

// NewService returns a Service on d that reads orders through orders and
// charges and refunds through gateway (in production a Resilient around the
// real or simulated gateway).
func NewService(d *db.DB, orders Orders, gateway Gateway, opts ...Option) *Service {
	s := &Service{db: d, orders: orders, gateway: gateway, after: DefaultReconcileAfter, writeFor: DefaultWriteFor}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Pay charges an order's total. The order must be pending
// (ErrOrderNotPayable) with no payment in flight, succeeded or declined
// (ErrOrderHasPayment), and n's amount and currency must equal its total
// (fault.AmountMismatch naming the field).
//
// A charge the gateway decides gives a settled payment and no error: status
// succeeded, or failed with ReasonDeclined (or ReasonGatewayError for a
// Permanent gateway error). When the gateway is unavailable the payment is
// recorded as failed with ReasonGatewayUnavailable and Pay returns it
// together with ErrGatewayUnavailable. Either way the outcome event is
// appended in the transaction that records it.
//
// Writing the outcome is retried while the database is unreachable, for up
// to the Service's write deadline (WithWriteFor); if that passes, Pay
// returns an error and the payment stays processing until the reconciler
// settles it from the gateway's record (see Reconcile).
func (s *Service) Pay(ctx context.Context, tenantID uuid.UUID, n NewPayment) (Payment, error) {
	if err := n.Validate(); err != nil {
		return Payment{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Payment{}, fmt.Errorf("pay order %s: new id: %w", n.OrderID, err)
	}
	row := fromModel(Payment{
		ID: id, TenantID: tenantID, OrderID: n.OrderID,
		Amount: n.Amount, Currency: n.Currency, Method: n.Method,
	})
	// Record the payment as processing first: the unique index lets one
	// payment per order through, so racing requests fail here and only one
	// of them ever reaches the gateway.
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		target, err := s.orders.PaymentTarget(ctx, tx, tenantID, n.OrderID)
		if err != nil {
			return err
		}
		if err := n.Check(target); err != nil {
			return err
		}
		inserted, err := insertPayment(tx, row) // row stays intact for a retry
		if err == nil {
			row = inserted
		}
		return err
	})
	if err != nil {
		return Payment{}, fmt.Errorf("pay order %s: %w", n.OrderID, err)
	}

	// From here on the payment must be settled even if the client goes
	// away: a payment left processing would block its order.
	ctx = context.WithoutCancel(ctx)
	p := toModel(row)
	res, gerr := s.charge(ctx, p)
	if errors.Is(gerr, errUndecided) {
		// Neither charged nor closed: the payment stays processing, and
		// the reconciler closes its key once the gateway answers again.
		return p, fmt.Errorf("pay order %s: payment %s: %w: %w", n.OrderID, p.ID, ErrGatewayUnavailable, gerr)
	}
	settle(&p, res, gerr)
	p, err = s.record(ctx, p)
	if err != nil {
		return Payment{}, fmt.Errorf("pay order %s: record payment %s as %s: %w", n.OrderID, p.ID, p.Status, err)
	}
	if p.FailureReason == ReasonGatewayUnavailable {
		return p, fmt.Errorf("pay order %s: payment %s: %w: %w", n.OrderID, p.ID, ErrGatewayUnavailable, gerr)
	}
	return p, nil
}

// settle sets p's outcome from the gateway's answer.
func settle(p *Payment, res Result, err error) {
	switch {
	case err == nil && res.Approved:
		p.Status, p.Captured, p.GatewayReference = StatusSucceeded, p.Amount, res.Reference
	case err == nil && res.Voided:
		// Never charged, and now never will be: the order stays payable.
		p.Status, p.FailureReason, p.GatewayReference = StatusFailed, ReasonGatewayUnavailable, res.Reference
	case err == nil:
		p.Status, p.FailureReason, p.DeclineReason = StatusFailed, ReasonDeclined, res.DeclineReason
		p.GatewayReference = res.Reference
	case IsPermanent(err):
		p.Status, p.FailureReason = StatusFailed, ReasonGatewayError
	default:
		p.Status, p.FailureReason = StatusFailed, ReasonGatewayUnavailable
	}
}

// errUndecided: the charge failed transiently and its key could not be
// closed either, so the gateway may yet charge it; the payment must stay
// processing.
var errUndecided = errors.New("the gateway neither answered the charge nor closed its key")

// charge asks the gateway to charge p. A transient failure may have lost
// the answer to a charge that was made all the same, or the charge may
// still be on its way: then the charge's key is closed at the gateway
// (Void), which answers what became of it, before the payment is given up.
// When even that fails the outcome is errUndecided.
func (s *Service) charge(ctx context.Context, p Payment) (Result, error) {
	c := chargeOf(p)
	res, err := s.gateway.Charge(ctx, c)
	if err == nil || IsPermanent(err) || errors.Is(err, ErrNotSent) {
		return res, err // decided, or never sent: the gateway cannot charge it later
	}
	v, verr := s.gateway.Void(ctx, c)
	if verr != nil {
		return Result{}, fmt.Errorf("%w: charge: %w; void: %w", errUndecided, err, verr)
	}
	return v, nil
}

// chargeOf is the gateway charge of p, keyed by its id.
func chargeOf(p Payment) Charge {
	return Charge{PaymentID: p.ID, Amount: p.Amount, Currency: p.Currency, Method: p.Method}
}

// record writes p's outcome and appends its event in one transaction,
// retrying with backoff while the database is unreachable (see write): the
// charge has happened, so giving up on the first hiccup would leave the
// payment processing. If the reconciler or an earlier try settled it
// first, the payment as stored is returned.
func (s *Service) record(ctx context.Context, p Payment) (Payment, error) {
	var stored Payment
	err := s.write(ctx, func() error {
		return s.db.WithTenant(ctx, p.TenantID, func(tx *gorm.DB) (err error) {
			stored, _, err = writeOutcome(ctx, tx, p)
			return err
		})
	})
	if err != nil {
		return p, err
	}
	return stored, nil
}

// writeOutcome writes p's outcome, if the payment is still processing, and
// appends its outcome event. It reports false, with the payment as stored,
// when the payment was settled already.
func writeOutcome(ctx context.Context, tx *gorm.DB, p Payment) (Payment, bool, error) {
	stored, settled, err := settlePayment(tx, fromModel(p))
	if err != nil || !settled {
		return toModel(stored), false, err
	}
	typ, data := outcomeOf(toModel(stored))
	if _, err := events.Append(ctx, tx, p.TenantID, StreamID(p.ID), 0, events.NewEvent{Type: typ, Data: data}); err != nil {
		return Payment{}, false, err
	}
	return toModel(stored), true, nil
}

// write runs op, which writes a gateway's answer, until it succeeds, with
// exponential backoff for up to the Service's write deadline. Errors no
// retry can mend (a broken constraint, a domain error) end it at once.
func (s *Service) write(ctx context.Context, op func() error) error {
	attempt := func() (struct{}, error) {
		if s.beforeWrite != nil {
			if err := s.beforeWrite(ctx); err != nil {
				return struct{}{}, err
			}
		}
		err := op()
		if err != nil && unmendable(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	_, err := backoff.Retry(ctx, attempt, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(s.writeFor))
	return err
}

// unmendable reports whether err is one that writing again cannot mend:
// a domain error (other than fault.Unavailable), or PostgreSQL refusing
// the data or the statement (classes 22, 23 and 42) rather than being
// unreachable or busy.
func unmendable(err error) bool {
	if fe, ok := fault.As(err); ok {
		return fe.Code != fault.Unavailable
	}
	if code := db.SQLState(err); len(code) == 5 {
		switch code[:2] {
		case "22", "23", "42":
			return true
		}
	}
	return false
}

// Get returns one of tenantID's payments, or ErrNotFound.
func (s *Service) Get(ctx context.Context, tenantID, id uuid.UUID) (Payment, error) {
	row, err := db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) (paymentRow, error) {
		return findPayment(tx, tenantID, id, false)
	})
	if err != nil {
		return Payment{}, fmt.Errorf("get payment %s: %w", id, err)
	}
	return toModel(row), nil
}

// List returns tenantID's payments ordered by id, after q.After, of one
// order when q.OrderID is set. It returns up to q.Limit+1 payments: an
// extra one means another page follows, and httpx.NewList turns it into
// the next cursor.
func (s *Service) List(ctx context.Context, tenantID uuid.UUID, q ListQuery) ([]Payment, error) {
	if q.Limit < 1 || q.Limit > MaxListLimit {
		q.Limit = DefaultListLimit
	}
	rows, err := db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) ([]paymentRow, error) {
		return listPayments(tx, tenantID, q)
	})
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	out := make([]Payment, len(rows))
	for i, r := range rows {
		out[i] = toModel(r)
	}
	return out, nil
}
