package auth

import (
	"context"
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
	r.Collection("/api-keys", "api_keys:read", "api_keys:write", httpx.Collection{List: h.list, Create: h.create, Delete: h.revoke})
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

// keys is how the API lists API keys.
var keys = httpx.Resource[Key, KeyResponse]{
	Render: ToResponse,
	ID:     func(k KeyResponse) uuid.UUID { return k.ID },
}

// ToResponse converts a key for the API.
func ToResponse(k Key) KeyResponse {
	return KeyResponse{
		ID: k.ID, Name: k.Name, Prefix: k.Prefix, Roles: k.Roles, CreatedBy: k.CreatedBy,
		ExpiresAt: k.ExpiresAt, RevokedAt: k.RevokedAt, CreatedAt: k.CreatedAt,
	}
}

// bindAs returns the request's principal and its body, decoded strictly
// (httpx.BindJSON) into a T.
func bindAs[T any](c *gin.Context) (identity.Principal, T, error) {
	var req T
	p, err := httpx.TenantPrincipal(c)
	if err != nil {
		return p, req, err
	}
	return p, req, httpx.BindJSON(c, &req)
}

// principalAndID returns the request's principal and its :id path
// parameter.
func principalAndID(c *gin.Context) (identity.Principal, uuid.UUID, error) {
	p, err := httpx.TenantPrincipal(c)
	if err != nil {
		return identity.Principal{}, uuid.Nil, err
	}
	id, err := httpx.ParseID(c, "id")
	return p, id, err
}

// deleteByID answers DELETE …/:id: del as the request's principal, then
// 204 No Content.
func deleteByID(c *gin.Context, del func(ctx context.Context, actor identity.Principal, id uuid.UUID) error) error {
	p, id, err := principalAndID(c)
	if err != nil {
		return err
	}
	if err := del(c.Request.Context(), p, id); err != nil {
		return err // may be 409 last_admin
	}
	c.Status(http.StatusNoContent)
	return nil
}

func (h *Handler) create(c *gin.Context) error {
	p, req, err := bindAs[keyRequest](c)
	if err != nil {
		return err
	}
	k, secret, err := h.svc.CreateKey(c.Request.Context(), p, NewKey(req))
	if err != nil {
		return err
	}
	resp := ToResponse(k)
	resp.Secret = secret
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusCreated, resp)
	return nil
}

func (h *Handler) list(c *gin.Context) error {
	return keys.List(c, h.svc.ListKeys)
}

func (h *Handler) revoke(c *gin.Context) error {
	return deleteByID(c, func(ctx context.Context, actor identity.Principal, id uuid.UUID) error {
		_, err := h.svc.RevokeKeyAs(ctx, actor, id)
		return err
	})
}
