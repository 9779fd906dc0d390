package payments

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
)

// Orders is what payments needs of orders: the order's state, read inside
// tx (a transaction scoped to the tenant). An order the tenant does not
// have gives an error wrapping a fault.NotFound error, such as
// ErrOrderNotFound.
type Orders interface {
	PaymentTarget(ctx context.Context, tx *gorm.DB, orderID uuid.UUID) (Target, error)
}

// Service runs the payment and refund use cases. Every database step works
// inside one db.WithTenant transaction, so it sees only the tenant's rows.
type Service struct {
	db      *db.DB
	orders  Orders
	gateway Gateway
}

// NewService returns a Service on d that reads orders through orders and
// charges through gateway (in production a Resilient around the real or
// simulated gateway).
func NewService(d *db.DB, orders Orders, gateway Gateway) *Service {
	return &Service{db: d, orders: orders, gateway: gateway}
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
		target, err := s.orders.PaymentTarget(ctx, tx, n.OrderID)
		if err != nil {
			return err
		}
		if err := n.Check(target); err != nil {
			return err
		}
		row, err = insertPayment(tx, row)
		return err
	})
	if err != nil {
		return Payment{}, fmt.Errorf("pay order %s: %w", n.OrderID, err)
	}

	// From here on the payment must be settled even if the client goes
	// away: a payment left processing would block its order.
	ctx = context.WithoutCancel(ctx)
	p := toModel(row)
	res, gerr := s.gateway.Charge(ctx, Charge{PaymentID: p.ID, Amount: p.Amount, Currency: p.Currency, Method: p.Method})
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
	case err == nil:
		p.Status, p.FailureReason, p.DeclineReason = StatusFailed, ReasonDeclined, res.DeclineReason
		p.GatewayReference = res.Reference
	case IsPermanent(err):
		p.Status, p.FailureReason = StatusFailed, ReasonGatewayError
	default:
		p.Status, p.FailureReason = StatusFailed, ReasonGatewayUnavailable
	}
}

// record writes p's outcome and appends its event in one transaction,
// trying a few times: the charge has happened, so giving up on the first
// database hiccup would leave the payment processing. If an earlier try
// committed after all, the payment as stored is returned.
func (s *Service) record(ctx context.Context, p Payment) (Payment, error) {
	op := func() (Payment, error) {
		var stored paymentRow
		err := s.db.WithTenant(ctx, p.TenantID, func(tx *gorm.DB) error {
			var settled bool
			var err error
			stored, settled, err = settlePayment(tx, fromModel(p))
			if err != nil || !settled {
				return err
			}
			typ, data := outcomeOf(toModel(stored))
			_, err = events.Append(ctx, tx, p.TenantID, StreamID(p.ID), 0, events.NewEvent{Type: typ, Data: data})
			return err
		})
		return toModel(stored), err
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 20 * time.Millisecond
	stored, err := backoff.Retry(ctx, op, backoff.WithBackOff(b), backoff.WithMaxTries(3))
	if err != nil {
		return p, err
	}
	return stored, nil
}

// Get returns one of tenantID's payments, or ErrNotFound.
func (s *Service) Get(ctx context.Context, tenantID, id uuid.UUID) (Payment, error) {
	var row paymentRow
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
		row, err = findPayment(tx, tenantID, id, false)
		return err
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
	var rows []paymentRow
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
		rows, err = listPayments(tx, tenantID, q)
		return err
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

// Refund gives back n.Amount of a succeeded payment and appends
// payment.refunded. The payment row is locked for the transaction, so
// concurrent refunds are serialized and their sum never exceeds what was
// captured (ErrRefundTooLarge). A payment that did not succeed gives
// ErrNotRefundable (or ErrPaymentUnsettled while processing).
func (s *Service) Refund(ctx context.Context, tenantID, paymentID uuid.UUID, n NewRefund) (Refund, error) {
	if err := n.Validate(); err != nil {
		return Refund{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Refund{}, fmt.Errorf("refund payment %s: new id: %w", paymentID, err)
	}
	var refund refundRow
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		row, err := findPayment(tx, tenantID, paymentID, true)
		if err != nil {
			return err
		}
		p := toModel(row)
		if p.Refunded, err = sumRefunds(tx, tenantID, paymentID); err != nil {
			return err
		}
		if err := CheckRefund(p, n.Amount); err != nil {
			return err
		}
		var updated paymentRow
		refund, updated, err = insertRefund(tx, refundRow{TenantID: tenantID, ID: id, PaymentID: paymentID, Amount: n.Amount, Currency: p.Currency})
		if err != nil {
			return err
		}
		_, err = events.Append(ctx, tx, tenantID, StreamID(paymentID), events.AnyVersion, events.NewEvent{
			Type: EventRefunded,
			Data: Refunded{
				PaymentID: paymentID, OrderID: p.OrderID, RefundID: refund.ID,
				Amount: refund.Amount, Currency: refund.Currency, TotalRefunded: updated.Refunded,
			},
		})
		return err
	})
	if err != nil {
		return Refund{}, fmt.Errorf("refund %d of payment %s: %w", n.Amount, paymentID, err)
	}
	return refundToModel(refund), nil
}
