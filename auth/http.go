package auth

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// Handler serves the /v1/api-keys routes.
type Handler struct {
	svc *Service
}

// NewHandler returns the API key handlers.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// Routes registers the API key routes on the /v1 router.
func (h *Handler) Routes(r *httpx.Router) {
	r.Handle(http.MethodGet, "/api-keys", "api_keys:read", h.list)
	r.Handle(http.MethodPost, "/api-keys", "api_keys:write", h.create)
	r.Handle(http.MethodDelete, "/api-keys/:id", "api_keys:write", h.revoke)
}

// keyRequest is the body of POST /v1/api-keys.
type keyRequest struct {
	Name      string     `json:"name"`
	Roles     []string   `json:"roles"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// KeyResponse is an API key as clients see it; Secret only on creation.
type KeyResponse struct {
	ID        uuid.UUID  `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Roles     []string   `json:"roles"`
	CreatedBy string     `json:"created_by"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	CreatedAt time.Time  `json:"created_at"`
	Secret    string     `json:"secret,omitempty"`
}

// ToResponse converts a key for the API.
func ToResponse(k Key) KeyResponse {
	return KeyResponse{
		ID: k.ID, Name: k.Name, Prefix: k.Prefix, Roles: k.Roles, CreatedBy: k.CreatedBy,
		ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, CreatedAt: k.CreatedAt,
	}
}

func principal(c *gin.Context) (identity.Principal, bool) {
	p, ok := identity.FromContext(c.Request.Context())
	if !ok || p.TenantID == uuid.Nil {
		httpx.Error(c, ErrUnauthenticated)
		return identity.Principal{}, false
	}
	return p, true
}

func (h *Handler) create(c *gin.Context) {
	p, ok := principal(c)
	if !ok {
		return
	}
	var req keyRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		httpx.Error(c, err)
		return
	}
	k, secret, err := h.svc.CreateKey(c.Request.Context(), p, NewKey(req))
	if err != nil {
		httpx.Error(c, err)
		return
	}
	resp := ToResponse(k)
	resp.Secret = secret
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, resp)
}

func (h *Handler) list(c *gin.Context) {
	p, ok := principal(c)
	if !ok {
		return
	}
	page, err := httpx.ParsePage(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	keys, err := h.svc.ListKeys(c.Request.Context(), p.TenantID, page.After, page.Limit)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	out := make([]KeyResponse, len(keys))
	for i, k := range keys {
		out[i] = ToResponse(k)
	}
	c.JSON(http.StatusOK, httpx.NewList(out, page.Limit, func(k KeyResponse) uuid.UUID { return k.ID }))
}

func (h *Handler) revoke(c *gin.Context) {
	p, ok := principal(c)
	if !ok {
		return
	}
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		httpx.Error(c, err)
		return
	}
	if _, err := h.svc.RevokeKeyAs(c.Request.Context(), p, id); err != nil {
		httpx.Error(c, err) // may be 409 last_admin
		return
	}
	c.Status(http.StatusNoContent)
}
