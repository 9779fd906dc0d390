package payments

import "github.com/google/uuid"

// Event types payments appends, each on the payment's own stream
// (StreamID). A payment's stream starts with exactly one outcome event,
// EventSucceeded or EventFailed, appended in the transaction that records
// the outcome; each refund then appends EventRefunded.
//
// The order saga reads the outcome events: EventSucceeded completes the
// order. EventFailed cancels the order only when Reason is "declined"
// (ReasonDeclined); a payment that failed with "gateway_unavailable" or
// "gateway_error" leaves the order pending, so it can be paid again or
// expire with its reservation.
const (
	EventSucceeded    = "payment.succeeded"
	EventFailed       = "payment.failed"
	EventRefunded     = "payment.refunded"
	EventRefundFailed = "payment.refund_failed"
)

// StreamID is the event stream of a payment: "payment-<id>".
func StreamID(paymentID uuid.UUID) string { return "payment-" + paymentID.String() }

// Outcome is the data of EventSucceeded and EventFailed.
type Outcome struct {
	PaymentID uuid.UUID `json:"payment_id"`
	OrderID   uuid.UUID `json:"order_id"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	// Reason is empty for EventSucceeded and the FailureReason for
	// EventFailed: only "declined" cancels the order.
	Reason FailureReason `json:"reason,omitempty"`
}

// Refunded is the data of EventRefunded.
type Refunded struct {
	PaymentID uuid.UUID `json:"payment_id"`
	OrderID   uuid.UUID `json:"order_id"`
	RefundID  uuid.UUID `json:"refund_id"`
	Amount    int64     `json:"amount"` // this refund
	Currency  string    `json:"currency"`
	// TotalRefunded is the payment's succeeded refunds so far, this one
	// included.
	TotalRefunded int64 `json:"total_refunded"`
	// Reason is who asked: "requested" or "order_cancelled".
	Reason RefundReason `json:"reason"`
}

// RefundFailure is the data of EventRefundFailed: the gateway refused the
// refund, and its amount is refundable again.
type RefundFailure struct {
	PaymentID     uuid.UUID    `json:"payment_id"`
	OrderID       uuid.UUID    `json:"order_id"`
	RefundID      uuid.UUID    `json:"refund_id"`
	Amount        int64        `json:"amount"`
	Currency      string       `json:"currency"`
	Reason        RefundReason `json:"reason"`
	FailureReason string       `json:"failure_reason"`
}

// outcomeOf returns the event type and data that record p's outcome.
func outcomeOf(p Payment) (string, Outcome) {
	o := Outcome{PaymentID: p.ID, OrderID: p.OrderID, Amount: p.Amount, Currency: p.Currency, Reason: p.FailureReason}
	if p.Status == StatusSucceeded {
		return EventSucceeded, o
	}
	return EventFailed, o
}
