package orders

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// Handler serves the /v1/orders routes.
type Handler struct {
	svc *Service
}

// NewHandler returns the order handlers.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// Routes registers the order routes on the /v1 router.
func (h *Handler) Routes(r *httpx.Router) {
	r.Collection("/orders", "orders:read", "orders:write", httpx.Collection{List: h.list, Create: h.place, Get: h.get})
	r.Handle(http.MethodPost, "/orders/:id/cancel", "orders:write", httpx.Handle(h.cancel))
	r.Handle(http.MethodGet, "/orders/:id/events", "orders:read", httpx.Handle(h.events))
}

type itemRequest struct {
	ProductID uuid.UUID `json:"product_id"`
	Quantity  int64     `json:"quantity"`
}

type placeRequest struct {
	CustomerID string        `json:"customer_id"`
	Items      []itemRequest `json:"items"`
}

// Response is an order as clients see it.
type Response struct {
	ID                   uuid.UUID  `json:"id"`
	CustomerID           string     `json:"customer_id"`
	Status               Status     `json:"status"`
	Items                []Item     `json:"items"`
	Total                int64      `json:"total"`
	Currency             string     `json:"currency"`
	CancellationReason   string     `json:"cancellation_reason,omitempty"`
	PaymentID            *uuid.UUID `json:"payment_id,omitempty"`
	ReservationExpiresAt time.Time  `json:"reservation_expires_at"`
	Version              int64      `json:"version"`
	CreatedAt            time.Time  `json:"created_at"`
	UpdatedAt            time.Time  `json:"updated_at"`
}

// toModel returns the order the request places; the service checks it.
func (r placeRequest) toModel() (NewOrder, error) {
	n := NewOrder{CustomerID: r.CustomerID, Items: make([]NewItem, len(r.Items))}
	for i, it := range r.Items {
		n.Items[i] = NewItem(it)
	}
	return n, nil
}

// orders is how the API shows orders.
var orders = httpx.Resource[Order, Response]{
	Render:  ToResponse,
	ID:      func(r Response) uuid.UUID { return r.ID },
	Version: func(o Order) int64 { return o.Version },
}

// ToResponse converts an order for the API.
func ToResponse(o Order) Response {
	return Response{ID: o.ID, CustomerID: o.CustomerID, Status: o.Status, Items: o.Items, Total: o.Total,
		Currency: o.Currency, CancellationReason: o.CancellationReason, PaymentID: o.PaymentID,
		ReservationExpiresAt: o.ReservationExpiresAt, Version: o.Version, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
}

// EventResponse is one event of an order's stream.
type EventResponse struct {
	ID        uuid.UUID       `json:"id"`
	Type      string          `json:"type"`
	Version   int64           `json:"version"`
	Data      json.RawMessage `json:"data"`
	Metadata  events.Metadata `json:"metadata"`
	CreatedAt time.Time       `json:"created_at"`
}

func (h *Handler) place(c *gin.Context) error {
	return httpx.Create(c, orders, placeRequest.toModel, h.svc.Place)
}

func (h *Handler) list(c *gin.Context) error {
	return orders.List(c, func(ctx context.Context, tenantID, after uuid.UUID, limit int) ([]Order, error) {
		status := Status(c.Query("status"))
		switch status {
		case "", Pending, Completed, Cancelled:
		default:
			return nil, fault.Invalid(fault.Field("status", "must be pending, completed or cancelled"))
		}
		return h.svc.List(ctx, tenantID, status, after, limit)
	})
}

func (h *Handler) get(c *gin.Context) error {
	return orders.Get(c, h.svc.Get)
}

func (h *Handler) cancel(c *gin.Context) error {
	return orders.Action(c, http.StatusOK, h.svc.Cancel)
}

func (h *Handler) events(c *gin.Context) error {
	tenantID, id, err := httpx.TenantAndID(c)
	if err != nil {
		return err
	}
	es, err := h.svc.Events(c.Request.Context(), tenantID, id)
	if err != nil {
		return err
	}
	out := make([]EventResponse, len(es))
	for i, e := range es {
		out[i] = EventResponse{ID: e.ID, Type: e.Type, Version: e.Version, Data: e.Data, Metadata: e.Metadata, CreatedAt: e.CreatedAt}
	}
	c.JSON(http.StatusOK, gin.H{"data": out, "next_cursor": nil})
	return nil
}
