package webhooks

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// Permissions the webhook routes require.
const (
	permRead  = "webhooks:read"
	permWrite = "webhooks:write"
)

// Handler serves the webhook routes.
type Handler struct {
	svc *Service
}

// NewHandler returns a Handler on svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// Routes registers the webhook routes on r, which is mounted on /v1.
func (h *Handler) Routes(r *httpx.Router) {
	r.Collection("/webhooks", permRead, permWrite, httpx.Collection{
		List: h.list, Create: h.create, Get: h.get, Update: h.update, Delete: h.delete,
	})
	r.Handle(http.MethodPost, "/webhooks/:id/rotate-secret", permWrite, httpx.Handle(h.rotate))
	r.Handle(http.MethodPost, "/webhooks/:id/test", permWrite, httpx.Handle(h.test))
	r.Handle(http.MethodPost, "/webhooks/:id/recover", permWrite, httpx.Handle(h.recoverSince))
	r.Handle(http.MethodGet, "/webhooks/:id/deliveries", permRead, httpx.Handle(h.deliveries))
	r.Handle(http.MethodPost, "/webhooks/:id/deliveries/:delivery_id/retry", permWrite, httpx.Handle(h.retry))
}

// endpointJSON is an endpoint as the API shows it; never its secret.
type endpointJSON struct {
	ID                      uuid.UUID  `json:"id"`
	URL                     string     `json:"url"`
	Description             string     `json:"description"`
	EventTypes              []string   `json:"event_types"`
	Status                  string     `json:"status"`
	DisabledReason          *string    `json:"disabled_reason"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	Version                 int64      `json:"version"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
}

// secretJSON is an endpoint with its secret, shown once: when created and
// when its secret is rotated.
type secretJSON struct {
	endpointJSON
	Secret string `json:"secret"`
}

// endpoints is how the API shows endpoints.
var endpoints = httpx.Resource[Endpoint, endpointJSON]{
	Render:  toJSON,
	ID:      func(e endpointJSON) uuid.UUID { return e.ID },
	Version: func(e Endpoint) int64 { return e.Version },
}

func toJSON(e Endpoint) endpointJSON {
	out := endpointJSON{ID: e.ID, URL: e.URL, Description: e.Description, EventTypes: e.EventTypes, Status: e.Status,
		Version: e.Version, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
	if out.EventTypes == nil {
		out.EventTypes = []string{}
	}
	if e.DisabledReason != "" {
		out.DisabledReason = &e.DisabledReason
	}
	if !e.PreviousExpiresAt.IsZero() {
		out.PreviousSecretExpiresAt = &e.PreviousExpiresAt
	}
	return out
}

// attemptJSON is one attempt of the delivery log.
type attemptJSON struct {
	Attempt     int        `json:"attempt"`
	AttemptedAt time.Time  `json:"attempted_at"`
	StatusCode  *int       `json:"status_code"`
	LatencyMs   int64      `json:"latency_ms"`
	Error       *string    `json:"error"`
	NextRetryAt *time.Time `json:"next_retry_at"`
}

// deliveryJSON is a delivery with its attempts.
type deliveryJSON struct {
	ID             uuid.UUID     `json:"id"`
	EndpointID     uuid.UUID     `json:"endpoint_id"`
	EventID        uuid.UUID     `json:"event_id"`
	EventType      string        `json:"event_type"`
	Origin         string        `json:"origin"`
	Status         string        `json:"status"`
	Attempts       int           `json:"attempts"`
	NextAttemptAt  *time.Time    `json:"next_attempt_at"`
	LastAttemptAt  *time.Time    `json:"last_attempt_at"`
	LastStatusCode *int          `json:"last_status_code"`
	LastLatencyMs  *int64        `json:"last_latency_ms"`
	LastError      *string       `json:"last_error"`
	CreatedAt      time.Time     `json:"created_at"`
	Log            []attemptJSON `json:"log"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// deliveries is how the API shows deliveries.
var deliveries = httpx.Resource[Delivery, deliveryJSON]{
	Render: deliveryToJSON,
	ID:     func(d deliveryJSON) uuid.UUID { return d.ID },
}

func deliveryToJSON(d Delivery) deliveryJSON {
	out := deliveryJSON{ID: d.ID, EndpointID: d.EndpointID, EventID: d.EventID, EventType: d.EventType, Origin: d.Origin,
		Status: d.Status, Attempts: d.Attempts, NextAttemptAt: optTime(d.NextAttemptAt), LastAttemptAt: optTime(d.LastAttemptAt),
		LastError: optString(d.LastError), CreatedAt: d.CreatedAt, Log: []attemptJSON{}}
	if !d.LastAttemptAt.IsZero() {
		ms := d.LastLatency.Milliseconds()
		out.LastLatencyMs = &ms
		if d.LastStatusCode != 0 {
			code := d.LastStatusCode
			out.LastStatusCode = &code
		}
	}
	for _, a := range d.Log {
		aj := attemptJSON{Attempt: a.Number, AttemptedAt: a.At, LatencyMs: a.Latency.Milliseconds(),
			Error: optString(a.Error), NextRetryAt: optTime(a.NextRetryAt)}
		if a.StatusCode != 0 {
			code := a.StatusCode
			aj.StatusCode = &code
		}
		out.Log = append(out.Log, aj)
	}
	return out
}

// createRequest is the body of POST /webhooks.
type createRequest struct {
	URL         *string  `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description *string  `json:"description"`
}

func (h *Handler) create(c *gin.Context) error {
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		return err
	}
	var req createRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	n := NewEndpoint{EventTypes: req.EventTypes}
	if req.URL != nil {
		n.URL = *req.URL
	}
	if req.Description != nil {
		n.Description = *req.Description
	}
	ep, secret, err := h.svc.Create(c.Request.Context(), tenantID, n)
	if err != nil {
		return err
	}
	c.Header("ETag", httpx.VersionETag(ep.Version))
	c.Header("Cache-Control", "no-store")
	httpx.WriteCreated(c, ep.ID, secretJSON{endpointJSON: toJSON(ep), Secret: secret})
	return nil
}

func (h *Handler) list(c *gin.Context) error {
	return endpoints.List(c, h.svc.List)
}

func (h *Handler) get(c *gin.Context) error {
	return endpoints.Get(c, h.svc.Get)
}

// updateRequest is the body of PATCH /webhooks/:id, a JSON Merge Patch:
// a key left out is kept; null is accepted for description only (it
// clears it).
type updateRequest struct {
	URL         json.RawMessage `json:"url"`
	EventTypes  json.RawMessage `json:"event_types"`
	Description json.RawMessage `json:"description"`
	Status      json.RawMessage `json:"status"`
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func (r updateRequest) toModel() (EndpointPatch, error) {
	var p EndpointPatch
	var f fault.Fields
	str := func(name string, raw json.RawMessage, nullable bool) *string {
		if raw == nil {
			return nil
		}
		if isNull(raw) {
			if !nullable {
				f.Add(name, "cannot be removed (null)")
			}
			empty := ""
			return &empty
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			f.Add(name, "must be a string")
			return nil
		}
		return &s
	}
	p.URL = str("url", r.URL, false)
	p.Description = str("description", r.Description, true)
	p.Status = str("status", r.Status, false)
	if r.EventTypes != nil {
		if err := json.Unmarshal(r.EventTypes, &p.EventTypes); err != nil || isNull(r.EventTypes) {
			f.Add("event_types", "must be an array of event types")
		} else if p.EventTypes == nil {
			p.EventTypes = []string{}
		}
	}
	return p, f.Err()
}

// ifMatch reads If-Match: 0 when absent or "*", -1 (matching no version)
// when it names no strong version tag.
func ifMatch(c *gin.Context) int64 {
	h := strings.TrimSpace(c.GetHeader("If-Match"))
	if h == "" || h == "*" {
		return 0
	}
	for _, t := range strings.Split(h, ",") {
		t = strings.TrimSpace(t)
		if len(t) > 2 && t[0] == '"' && t[len(t)-1] == '"' {
			if v, err := strconv.ParseInt(t[1:len(t)-1], 10, 64); err == nil && v > 0 {
				return v
			}
		}
	}
	return -1
}

// update applies a PATCH, guarded by the version an If-Match header names.
func (h *Handler) update(c *gin.Context) error {
	return httpx.Update(c, endpoints, updateRequest.toModel,
		func(ctx context.Context, tenantID, id uuid.UUID, p EndpointPatch) (Endpoint, error) {
			p.IfMatch = ifMatch(c)
			return h.svc.Update(ctx, tenantID, id, p)
		})
}

func (h *Handler) delete(c *gin.Context) error {
	return httpx.DeleteByID(c, h.svc.Delete)
}

func (h *Handler) rotate(c *gin.Context) error {
	tenantID, id, err := httpx.TenantAndID(c)
	if err != nil {
		return err
	}
	ep, secret, err := h.svc.RotateSecret(c.Request.Context(), tenantID, id)
	if err != nil {
		return err
	}
	c.Header("ETag", httpx.VersionETag(ep.Version))
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, secretJSON{endpointJSON: toJSON(ep), Secret: secret})
	return nil
}

func (h *Handler) test(c *gin.Context) error {
	return deliveries.Action(c, http.StatusAccepted, h.svc.SendTest)
}

// recoverRequest is the body of POST /webhooks/:id/recover.
type recoverRequest struct {
	Since *time.Time `json:"since"`
}

// recoverJSON answers POST /webhooks/:id/recover.
type recoverJSON struct {
	EndpointID uuid.UUID `json:"endpoint_id"`
	Since      time.Time `json:"since"`
	Enqueued   int       `json:"enqueued"`
}

func (h *Handler) recoverSince(c *gin.Context) error {
	tenantID, id, err := httpx.TenantAndID(c)
	if err != nil {
		return err
	}
	var req recoverRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	if req.Since == nil {
		return fault.Invalid(fault.Field("since", "is required (an RFC 3339 time)"))
	}
	n, err := h.svc.Recover(c.Request.Context(), tenantID, id, *req.Since)
	if err != nil {
		return err
	}
	c.JSON(http.StatusAccepted, recoverJSON{EndpointID: id, Since: req.Since.UTC(), Enqueued: n})
	return nil
}

// deliveries lists an endpoint's deliveries: its :id is read after the
// tenant and before the page, as every …/:id route reads them.
func (h *Handler) deliveries(c *gin.Context) error {
	tenantID, id, err := httpx.TenantAndID(c)
	if err != nil {
		return err
	}
	return deliveries.List(c, func(ctx context.Context, _, after uuid.UUID, limit int) ([]Delivery, error) {
		return h.svc.Deliveries(ctx, tenantID, id, after, limit)
	})
}

func (h *Handler) retry(c *gin.Context) error {
	return deliveries.Action(c, http.StatusAccepted, func(ctx context.Context, tenantID, id uuid.UUID) (Delivery, error) {
		deliveryID, err := httpx.ParseID(c, "delivery_id")
		if err != nil {
			return Delivery{}, err
		}
		return h.svc.Retry(ctx, tenantID, id, deliveryID)
	})
}
