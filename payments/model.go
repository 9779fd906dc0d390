package payments

import (
	"regexp"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
)

// Status is where a payment stands. A payment is processing while the
// gateway is being asked, and until its outcome is written: if writing it
// fails (the database is down, the process dies), the reconciler settles
// the payment from the gateway's own record.
type Status string

// Payment statuses.
const (
	StatusProcessing Status = "processing"
	StatusSucceeded  Status = "succeeded"
	StatusFailed     Status = "failed"
)

// FailureReason says why a payment failed. Only ReasonDeclined makes the
// order saga cancel the order; the others leave it pending, to be paid again.
type FailureReason string

// Failure reasons.
const (
	// ReasonDeclined: the gateway answered and refused the charge.
	ReasonDeclined FailureReason = "declined"
	// ReasonGatewayUnavailable: the gateway could not be reached (circuit
	// breaker open, or transient failures outlasted the retries).
	ReasonGatewayUnavailable FailureReason = "gateway_unavailable"
	// ReasonGatewayError: the gateway failed in a way retrying cannot mend.
	ReasonGatewayError FailureReason = "gateway_error"
)

// Payment methods the built-in simulated gateway understands; a payment
// with any other method is refused before the gateway is called.
const (
	MethodCard         = "card"          // approved
	MethodCardDeclined = "card_declined" // declined
	MethodCardError    = "card_error"    // fails transiently, then approved
)

// methods lists the accepted payment methods.
var methods = []string{MethodCard, MethodCardDeclined, MethodCardError}

// OrderPending is the one order status (Target.Status) that can be paid.
const OrderPending = "pending"

// Payment is one attempt to capture an order's total.
type Payment struct {
	ID       uuid.UUID
	TenantID uuid.UUID
	OrderID  uuid.UUID
	Status   Status
	Amount   int64 // minor units of Currency
	Currency string
	Method   string
	// FailureReason is set when Status is StatusFailed.
	FailureReason FailureReason
	// DeclineReason is the gateway's own word for a decline, if it gave one.
	DeclineReason string
	// GatewayReference is the gateway's id of an approved charge.
	GatewayReference string
	Captured         int64 // Amount once succeeded, otherwise 0
	Refunded         int64 // sum of the payment's refunds, never above Captured
	Version          int   // starts at 1 and grows by one with every change
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Refundable is the money that can still be refunded: Refunded counts
// pending refunds too, so that they can never promise more than Captured.
func (p Payment) Refundable() int64 { return p.Captured - p.Refunded }

// NewPayment is the input for paying an order.
type NewPayment struct {
	OrderID  uuid.UUID
	Amount   int64
	Currency string
	Method   string
}

// Target is what payments needs to know of an order to pay it.
type Target struct {
	Status   string // "pending", "completed" or "cancelled"; only OrderPending is payable
	Total    int64  // minor units of Currency
	Currency string
}

// RefundStatus is where a refund stands: pending until the gateway
// answers, then succeeded or failed.
type RefundStatus string

// Refund statuses.
const (
	RefundPending   RefundStatus = "pending"
	RefundSucceeded RefundStatus = "succeeded"
	RefundFailed    RefundStatus = "failed"
)

// RefundReason says who asked for a refund.
type RefundReason string

// Refund reasons.
const (
	// RefundRequested: a client, through the API.
	RefundRequested RefundReason = "requested"
	// RefundOrderCancelled: the order saga, for a payment that succeeded
	// for an order that had been cancelled or had expired meanwhile.
	RefundOrderCancelled RefundReason = "order_cancelled"
)

// Refund gives back part or all of a succeeded payment's captured money.
// Its ID is the idempotency key towards the gateway.
type Refund struct {
	ID        uuid.UUID
	TenantID  uuid.UUID
	PaymentID uuid.UUID
	Amount    int64 // minor units of Currency, the payment's currency
	Currency  string
	Status    RefundStatus
	Reason    RefundReason
	// FailureReason is the gateway's word for a refused refund.
	FailureReason string
	// GatewayReference is the gateway's id of a succeeded refund.
	GatewayReference string
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// NewRefund is the input for refunding a payment.
type NewRefund struct {
	Amount int64
}

// ListQuery selects a page of payments ordered by id (creation order).
type ListQuery struct {
	After   uuid.UUID // uuid.Nil for the first page
	Limit   int       // 1–MaxListLimit; anything else means DefaultListLimit
	OrderID uuid.UUID // uuid.Nil for the payments of every order
}

// Page sizes for ListQuery.
const (
	DefaultListLimit = 50
	MaxListLimit     = 200
)

// Sentinel errors.
var (
	ErrNotFound = fault.New(fault.NotFound, "payment not found")
	// ErrOrderNotFound is what an Orders implementation returns (or wraps)
	// for an order the tenant does not have.
	ErrOrderNotFound   = fault.New(fault.NotFound, "order not found")
	ErrOrderNotPayable = fault.New(fault.OrderNotPayable, "the order is not pending")
	// ErrOrderHasPayment: the order already has a payment in flight, a
	// captured one, or a declined one (which is about to cancel it).
	ErrOrderHasPayment = fault.New(fault.OrderNotPayable, "the order already has a payment in progress, succeeded or declined")
	// ErrGatewayUnavailable: the payment was recorded as failed with
	// ReasonGatewayUnavailable and the order is still pending.
	ErrGatewayUnavailable = fault.New(fault.GatewayUnavailable,
		"the payment gateway is unavailable; the payment was recorded as failed and the order is still pending, try again later")
	ErrNotRefundable    = fault.New(fault.Conflict, "only a succeeded payment can be refunded")
	ErrRefundTooLarge   = fault.New(fault.Conflict, "the refund exceeds the captured amount not yet refunded")
	ErrPaymentUnsettled = fault.New(fault.Conflict, "the payment is still being processed")
	// ErrRefundNotFound: no such refund of the tenant.
	ErrRefundNotFound = fault.New(fault.NotFound, "refund not found")
)

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

// ValidMethod reports whether m is an accepted payment method.
func ValidMethod(m string) bool { return slices.Contains(methods, m) }

// Validate checks a new payment's fields.
func (n NewPayment) Validate() error {
	var f fault.Fields
	if n.OrderID == uuid.Nil {
		f.Add("order_id", "is required")
	}
	checkAmount(&f, n.Amount)
	if !currencyPattern.MatchString(n.Currency) {
		f.Add("currency", "must be a three-letter ISO 4217 code in capitals, such as EUR")
	}
	if !ValidMethod(n.Method) {
		f.Add("payment_method", "must be one of card, card_declined, card_error")
	}
	return f.Err()
}

// Check returns an error unless the order t can be paid with n: it must be
// pending (ErrOrderNotPayable), and the amount and currency must equal its
// total (an amount_mismatch error naming each field that differs).
func (n NewPayment) Check(t Target) error {
	if t.Status != OrderPending {
		return ErrOrderNotPayable
	}
	var f []fault.FieldError
	if n.Amount != t.Total {
		f = append(f, fault.Field("amount", "must equal the order total"))
	}
	if n.Currency != t.Currency {
		f = append(f, fault.Field("currency", "must equal the order currency"))
	}
	if len(f) > 0 {
		return &fault.Error{Code: fault.AmountMismatch, Message: "the amount or currency does not match the order total", Fields: f}
	}
	return nil
}

// Validate checks a refund: a positive amount.
func (n NewRefund) Validate() error {
	var f fault.Fields
	checkAmount(&f, n.Amount)
	return f.Err()
}

// CheckRefund returns an error unless p can be refunded by amount: p must
// have succeeded, and amount must not exceed what is captured and not yet
// refunded.
func CheckRefund(p Payment, amount int64) error {
	switch {
	case p.Status == StatusProcessing:
		return ErrPaymentUnsettled
	case p.Status != StatusSucceeded:
		return ErrNotRefundable
	case amount > p.Refundable():
		return ErrRefundTooLarge
	}
	return nil
}

func checkAmount(f *fault.Fields, amount int64) {
	if amount <= 0 {
		f.Add("amount", "must be a positive integer (minor units)")
	}
}
