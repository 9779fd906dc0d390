package payments

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/events"
)

// Audit actions of refunds. A refund requested through the API is audited
// as its request; these record what happens without one, and what the
// gateway answered.
const (
	ActionRefundRequested = "refund.requested" // by the saga, for a cancelled order
	ActionRefundSucceeded = "refund.succeeded"
	ActionRefundFailed    = "refund.failed"
)

// ReasonRefundGatewayError is a refund's FailureReason when the gateway
// refused the request itself (a Permanent error).
const ReasonRefundGatewayError = "gateway_error"

// Refund gives back n.Amount of a succeeded payment through the gateway.
// The refund is recorded as pending, with the payment row locked so that
// concurrent refunds never promise more than was captured
// (ErrRefundTooLarge); a payment that did not succeed gives
// ErrNotRefundable (or ErrPaymentUnsettled while processing). Then the
// gateway is asked, with the refund's id as the idempotency key, outside
// any transaction.
//
// The refund comes back succeeded or failed (with the gateway's reason),
// as the gateway answered, and payment.refunded or payment.refund_failed
// is appended. While the gateway cannot be reached it comes back pending,
// and the reconciler sends it again until the gateway answers.
func (s *Service) Refund(ctx context.Context, tenantID, paymentID uuid.UUID, n NewRefund) (Refund, error) {
	if err := n.Validate(); err != nil {
		return Refund{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Refund{}, fmt.Errorf("refund payment %s: new id: %w", paymentID, err)
	}
	var row refundRow
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		p, err := findPayment(tx, tenantID, paymentID, true)
		if err != nil {
			return err
		}
		if err := CheckRefund(toModel(p), n.Amount); err != nil {
			return err
		}
		// The reconciler leaves the refund to this request for as long
		// as it may take to send it.
		row, _, err = insertRefund(tx, refundRow{TenantID: tenantID, ID: id, PaymentID: paymentID, Amount: n.Amount,
			Currency: p.Currency, Reason: string(RefundRequested)}, s.after)
		return err
	})
	if err != nil {
		return Refund{}, fmt.Errorf("refund %d of payment %s: %w", n.Amount, paymentID, err)
	}
	// From here on the refund must reach the gateway even if the client
	// goes away.
	r, err := s.sendRefund(context.WithoutCancel(ctx), row)
	if err != nil {
		return Refund{}, fmt.Errorf("refund %d of payment %s: %w", n.Amount, paymentID, err)
	}
	return r, nil
}

// RefundCancelledOrder gives back what is left of a payment that succeeded
// for an order that had already been cancelled (or had expired), so the
// customer does not pay for nothing. The order saga calls it inside tx,
// its transaction for the payment.succeeded event, so the refund is
// recorded exactly once with the saga's checkpoint; a payment already
// refunded for its order is left alone however often the saga asks (a
// unique index), as is one refunded in full through the API. It records a
// pending refund, due at once, and an audit event in tx; the reconciler
// sends it to the gateway after commit.
func (s *Service) RefundCancelledOrder(ctx context.Context, tx *gorm.DB, tenantID, paymentID uuid.UUID, cancellationReason string) error {
	row, err := findPayment(tx, tenantID, paymentID, true)
	if err != nil {
		return fmt.Errorf("refund payment %s of a cancelled order: %w", paymentID, err)
	}
	p := toModel(row)
	if p.Status != StatusSucceeded || p.Refundable() <= 0 {
		return nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("refund payment %s of a cancelled order: new id: %w", paymentID, err)
	}
	r, inserted, err := insertRefund(tx, refundRow{TenantID: tenantID, ID: id, PaymentID: paymentID, Amount: p.Refundable(),
		Currency: p.Currency, Reason: string(RefundOrderCancelled)}, 0)
	if err != nil || !inserted {
		return err
	}
	return audit.Record(ctx, tx, tenantID, audit.Entry{
		Action:   ActionRefundRequested,
		Resource: "refund:" + r.ID.String(),
		Summary: map[string]any{
			"payment_id": paymentID, "order_id": p.OrderID, "amount": r.Amount, "currency": r.Currency,
			"reason": RefundOrderCancelled, "cancellation_reason": cancellationReason,
		},
	})
}

// sendRefund sends a pending refund to the gateway and writes its answer,
// retrying the write while the database is unreachable (see write). A
// gateway that cannot be reached leaves the refund pending, to be sent
// again by the reconciler; that is not an error.
func (s *Service) sendRefund(ctx context.Context, r refundRow) (Refund, error) {
	res, err := s.gateway.Refund(ctx, RefundRequest{RefundID: r.ID, PaymentID: r.PaymentID, Amount: r.Amount, Currency: r.Currency})
	switch {
	case err == nil && res.Succeeded:
		r.Status, r.GatewayReference = string(RefundSucceeded), nullString(res.Reference)
	case err == nil:
		reason := res.FailureReason
		if reason == "" {
			reason = "refused"
		}
		r.Status, r.FailureReason, r.GatewayReference = string(RefundFailed), nullString(reason), nullString(res.Reference)
	case IsPermanent(err):
		r.Status, r.FailureReason = string(RefundFailed), nullString(ReasonRefundGatewayError)
	default:
		return refundToModel(r), nil
	}
	stored := r
	err = s.write(ctx, func() error {
		return s.db.WithTenant(ctx, r.TenantID, func(tx *gorm.DB) (err error) {
			stored, err = writeRefundOutcome(ctx, tx, r)
			return err
		})
	})
	if err != nil {
		return refundToModel(r), fmt.Errorf("record refund %s as %s: %w", r.ID, r.Status, err)
	}
	return refundToModel(stored), nil
}

// writeRefundOutcome writes the gateway's answer in r to a refund that is
// still pending, appends payment.refunded or payment.refund_failed to the
// payment's stream and audits it. It returns the refund as stored; one
// settled already is left as it is.
func writeRefundOutcome(ctx context.Context, tx *gorm.DB, r refundRow) (refundRow, error) {
	// Payment first, then refund: the order in which Refund locks them.
	p, err := findPayment(tx, r.TenantID, r.PaymentID, true)
	if err != nil {
		return refundRow{}, err
	}
	stored, settled, err := settleRefund(tx, r)
	if err != nil || !settled {
		return stored, err
	}
	e := events.NewEvent{Type: EventRefundFailed, Data: RefundFailure{PaymentID: p.ID, OrderID: p.OrderID, RefundID: stored.ID,
		Amount: stored.Amount, Currency: stored.Currency, Reason: RefundReason(stored.Reason), FailureReason: stored.FailureReason.String}}
	action := ActionRefundFailed
	if RefundStatus(stored.Status) == RefundSucceeded {
		total, err := succeededRefunds(tx, r.TenantID, r.PaymentID)
		if err != nil {
			return refundRow{}, err
		}
		e = events.NewEvent{Type: EventRefunded, Data: Refunded{PaymentID: p.ID, OrderID: p.OrderID, RefundID: stored.ID,
			Amount: stored.Amount, Currency: stored.Currency, TotalRefunded: total, Reason: RefundReason(stored.Reason)}}
		action = ActionRefundSucceeded
	}
	if _, err := events.Append(ctx, tx, r.TenantID, StreamID(p.ID), events.AnyVersion, e); err != nil {
		return refundRow{}, err
	}
	summary := map[string]any{"payment_id": p.ID, "order_id": p.OrderID, "amount": stored.Amount, "currency": stored.Currency,
		"reason": stored.Reason}
	if stored.FailureReason.Valid {
		summary["failure_reason"] = stored.FailureReason.String
	}
	err = audit.Record(ctx, tx, r.TenantID, audit.Entry{Action: action, Resource: "refund:" + stored.ID.String(), Summary: summary})
	return stored, err
}
