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
	r.Handle(http.MethodPost, "/orders", "orders:write", h.place)
	r.Handle(http.MethodGet, "/orders", "orders:read", h.list)
	r.Handle(http.MethodGet, "/orders/:id", "orders:read", h.get)
	r.Handle(http.MethodPost, "/orders/:id/cancel", "orders:write", h.cancel)
	r.Handle(http.MethodGet, "/orders/:id/events", "orders:read", h.events)
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

func (h *Handler) place(c *gin.Context) {
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	var req placeRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		httpx.Error(c, err)
		return
	}
	n := NewOrder{CustomerID: req.CustomerID, Items: make([]NewItem, len(req.Items))}
	for i, it := range req.Items {
		n.Items[i] = NewItem(it)
	}
	o, err := h.svc.Place(c.Request.Context(), tenantID, n)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	c.Header("Location", "/v1/orders/"+o.ID.String())
	c.Header("ETag", httpx.VersionETag(o.Version))
	c.JSON(http.StatusCreated, ToResponse(o))
}

func (h *Handler) list(c *gin.Context) {
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	page, err := httpx.ParsePage(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	status := Status(c.Query("status"))
	switch status {
	case "", Pending, Completed, Cancelled:
	default:
		httpx.Error(c, fault.Invalid(fault.Field("status", "must be pending, completed or cancelled")))
		return
	}
	os, err := h.svc.List(c.Request.Context(), tenantID, status, page.After, page.Limit)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	out := make([]Response, len(os))
	for i, o := range os {
		out[i] = ToResponse(o)
	}
	c.JSON(http.StatusOK, httpx.NewList(out, page.Limit, func(r Response) uuid.UUID { return r.ID }))
}

func (h *Handler) get(c *gin.Context) {
	tenantID, id, err := httpx.TenantAndID(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	o, err := h.svc.Get(c.Request.Context(), tenantID, id)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	tag := httpx.VersionETag(o.Version)
	c.Header("ETag", tag)
	if httpx.NoneMatch(c.GetHeader("If-None-Match"), tag) {
		c.Status(http.StatusNotModified)
		return
	}
	c.JSON(http.StatusOK, ToResponse(o))
}

func (h *Handler) cancel(c *gin.Context) {
	tenantID, id, err := httpx.TenantAndID(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	o, err := h.svc.Cancel(c.Request.Context(), tenantID, id)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	c.Header("ETag", httpx.VersionETag(o.Version))
	c.JSON(http.StatusOK, ToResponse(o))
}

func (h *Handler) events(c *gin.Context) {
	tenantID, id, err := httpx.TenantAndID(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	es, err := h.svc.Events(c.Request.Context(), tenantID, id)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	out := make([]EventResponse, len(es))
	for i, e := range es {
		out[i] = EventResponse{ID: e.ID, Type: e.Type, Version: e.Version, Data: e.Data, Metadata: e.Metadata, CreatedAt: e.CreatedAt}
	}
	c.JSON(http.StatusOK, gin.H{"data": out, "next_cursor": nil})
}
