package orders

import (
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
	r.Handle(http.MethodPost, "/orders", "orders:write", httpx.Handle(h.place))
	r.Handle(http.MethodGet, "/orders", "orders:read", httpx.Handle(h.list))
	r.Handle(http.MethodGet, "/orders/:id", "orders:read", httpx.Handle(h.get))
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
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		return err
	}
	var req placeRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	n := NewOrder{CustomerID: req.CustomerID, Items: make([]NewItem, len(req.Items))}
	for i, it := range req.Items {
		n.Items[i] = NewItem(it)
	}
	o, err := h.svc.Place(c.Request.Context(), tenantID, n)
	if err != nil {
		return err
	}
	c.Header("Location", "/v1/orders/"+o.ID.String())
	c.Header("ETag", httpx.VersionETag(o.Version))
	c.JSON(http.StatusCreated, ToResponse(o))
	return nil
}

func (h *Handler) list(c *gin.Context) error {
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		return err
	}
	page, err := httpx.ParsePage(c)
	if err != nil {
		return err
	}
	status := Status(c.Query("status"))
	switch status {
	case "", Pending, Completed, Cancelled:
	default:
		return fault.Invalid(fault.Field("status", "must be pending, completed or cancelled"))
	}
	os, err := h.svc.List(c.Request.Context(), tenantID, status, page.After, page.Limit)
	if err != nil {
		return err
	}
	httpx.WriteList(c, page, os, ToResponse, func(r Response) uuid.UUID { return r.ID })
	return nil
}

func (h *Handler) get(c *gin.Context) error {
	return httpx.GetByID(c, h.svc.Get, func(o Order) int64 { return o.Version }, ToResponse)
}

func (h *Handler) cancel(c *gin.Context) error {
	tenantID, id, err := httpx.TenantAndID(c)
	if err != nil {
		return err
	}
	o, err := h.svc.Cancel(c.Request.Context(), tenantID, id)
	if err != nil {
		return err
	}
	c.Header("ETag", httpx.VersionETag(o.Version))
	c.JSON(http.StatusOK, ToResponse(o))
	return nil
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
