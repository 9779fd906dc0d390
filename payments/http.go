package payments

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// Permissions the payment routes require.
const (
	permRead   = "payments:read"
	permWrite  = "payments:write"
	permRefund = "payments:refund"
)

// Handler serves the payment routes.
type Handler struct {
	svc *Service
}

// NewHandler returns a Handler on svc.
func NewHandler(svc *Service) *Handler {
	return &Handler{svc: svc}
}

// Routes registers the payment routes on r, which is mounted on /v1.
func (h *Handler) Routes(r *httpx.Router) {
	r.Collection("/payments", permRead, permWrite, httpx.Collection{List: h.list, Create: h.create, Get: h.get})
	r.Handle(http.MethodPost, "/payments/:id/refunds", permRefund, httpx.Handle(h.refund))
}

// paymentJSON is a payment as the API shows it.
type paymentJSON struct {
	ID            uuid.UUID `json:"id"`
	OrderID       uuid.UUID `json:"order_id"`
	Status        Status    `json:"status"`
	Amount        int64     `json:"amount"`
	Currency      string    `json:"currency"`
	PaymentMethod string    `json:"payment_method"`
	FailureReason string    `json:"failure_reason,omitempty"`
	Refunded      int64     `json:"refunded"`
	CreatedAt     time.Time `json:"created_at"`
}

// payments is how the API shows payments.
var payments = httpx.Resource[Payment, paymentJSON]{
	Render:  toJSON,
	ID:      func(p paymentJSON) uuid.UUID { return p.ID },
	Version: func(p Payment) int64 { return int64(p.Version) },
}

func toJSON(p Payment) paymentJSON {
	return paymentJSON{
		ID:            p.ID,
		OrderID:       p.OrderID,
		Status:        p.Status,
		Amount:        p.Amount,
		Currency:      p.Currency,
		PaymentMethod: p.Method,
		FailureReason: string(p.FailureReason),
		Refunded:      p.Refunded,
		CreatedAt:     p.CreatedAt,
	}
}

// refundJSON is a refund as the API shows it.
type refundJSON struct {
	ID            uuid.UUID    `json:"id"`
	PaymentID     uuid.UUID    `json:"payment_id"`
	Amount        int64        `json:"amount"`
	Currency      string       `json:"currency"`
	Status        RefundStatus `json:"status"`
	Reason        RefundReason `json:"reason"`
	FailureReason string       `json:"failure_reason,omitempty"`
	CreatedAt     time.Time    `json:"created_at"`
}

func refundToJSON(r Refund) refundJSON {
	return refundJSON{ID: r.ID, PaymentID: r.PaymentID, Amount: r.Amount, Currency: r.Currency, Status: r.Status,
		Reason: r.Reason, FailureReason: r.FailureReason, CreatedAt: r.CreatedAt}
}

// createRequest is the body of POST /payments. Pointers tell a missing
// field from a zero one.
type createRequest struct {
	OrderID       *string `json:"order_id"`
	Amount        *int64  `json:"amount"`
	Currency      *string `json:"currency"`
	PaymentMethod *string `json:"payment_method"`
}

// toModel returns the new payment, or a validation error naming every
// missing or malformed field together with the problems of the others.
func (r createRequest) toModel() (NewPayment, error) {
	var n NewPayment
	var f fault.Fields
	if r.OrderID == nil {
		f.Add("order_id", "is required")
	} else if id, err := uuid.Parse(*r.OrderID); err != nil || id == uuid.Nil {
		f.Add("order_id", "must be a UUID")
	} else {
		n.OrderID = id
	}
	httpx.Required(&f, "amount", r.Amount, &n.Amount)
	httpx.Required(&f, "currency", r.Currency, &n.Currency)
	httpx.Required(&f, "payment_method", r.PaymentMethod, &n.Method)
	httpx.AddInvalid(&f, n.Validate())
	return n, f.Err()
}

// refundRequest is the body of POST /payments/:id/refunds.
type refundRequest struct {
	Amount *int64 `json:"amount"`
}

func (h *Handler) create(c *gin.Context) error {
	return httpx.Create(c, payments, createRequest.toModel, h.svc.Pay)
}

func (h *Handler) list(c *gin.Context) error {
	return payments.List(c, func(ctx context.Context, tenantID, after uuid.UUID, limit int) ([]Payment, error) {
		q := ListQuery{After: after, Limit: limit}
		if raw, given := c.GetQuery("order_id"); given {
			id, err := uuid.Parse(raw)
			if err != nil || id == uuid.Nil {
				return nil, fault.Invalid(fault.Field("order_id", "must be a UUID"))
			}
			q.OrderID = id
		}
		return h.svc.List(ctx, tenantID, q)
	})
}

func (h *Handler) get(c *gin.Context) error {
	return payments.Get(c, h.svc.Get)
}

func (h *Handler) refund(c *gin.Context) error {
	tenantID, id, err := httpx.TenantAndID(c)
	if err != nil {
		return err
	}
	var req refundRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	if req.Amount == nil {
		return fault.Invalid(fault.Field("amount", "is required"))
	}
	r, err := h.svc.Refund(c.Request.Context(), tenantID, id, NewRefund{Amount: *req.Amount})
	if err != nil {
		return err
	}
	// The gateway decided (succeeded or failed): 201. It could not be
	// reached: 202, the refund is pending and will be sent again.
	status := http.StatusCreated
	if r.Status == RefundPending {
		status = http.StatusAccepted
	}
	c.JSON(status, refundToJSON(r))
	return nil
}
