package auth

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/httpx"
)

// MemberRoutes registers the /v1/members routes.
func (h *Handler) MemberRoutes(r *httpx.Router) {
	r.Handle(http.MethodGet, "/members", "members:read", h.listMembers)
	r.Handle(http.MethodPost, "/members", "members:write", h.addMember)
	r.Handle(http.MethodPatch, "/members/:id", "members:write", h.patchMember)
	r.Handle(http.MethodDelete, "/members/:id", "members:write", h.removeMember)
}

// MemberResponse is a member as clients see it.
type MemberResponse struct {
	ID           uuid.UUID    `json:"id"`
	Issuer       string       `json:"issuer,omitempty"`
	Subject      string       `json:"subject,omitempty"`
	Email        string       `json:"email,omitempty"`
	Roles        []string     `json:"roles"`
	Status       MemberStatus `json:"status"`
	CreatedBy    string       `json:"created_by"`
	CreatedAt    time.Time    `json:"created_at"`
	UpdatedAt    time.Time    `json:"updated_at"`
	LastSignInAt *time.Time   `json:"last_sign_in_at"`
}

func toMemberResponse(m Member) MemberResponse {
	return MemberResponse{ID: m.ID, Issuer: m.Issuer, Subject: m.Subject, Email: m.Email, Roles: m.Roles,
		Status: m.Status, CreatedBy: m.CreatedBy, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, LastSignInAt: m.LastSignInAt}
}

type memberRequest struct {
	Email   string   `json:"email"`
	Subject string   `json:"subject"`
	Roles   []string `json:"roles"`
}

type memberPatch struct {
	Roles []string `json:"roles"`
}

func (h *Handler) listMembers(c *gin.Context) {
	p, ok := principal(c)
	if !ok {
		return
	}
	page, err := httpx.ParsePage(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	ms, err := h.svc.ListMembers(c.Request.Context(), p.TenantID, page.After, page.Limit)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	out := make([]MemberResponse, len(ms))
	for i, m := range ms {
		out[i] = toMemberResponse(m)
	}
	c.JSON(http.StatusOK, httpx.NewList(out, page.Limit, func(m MemberResponse) uuid.UUID { return m.ID }))
}

func (h *Handler) addMember(c *gin.Context) {
	p, ok := principal(c)
	if !ok {
		return
	}
	var req memberRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		httpx.Error(c, err)
		return
	}
	m, err := h.svc.AddMember(c.Request.Context(), p, NewMember(req))
	if err != nil {
		httpx.Error(c, err)
		return
	}
	c.Header("Location", "/v1/members/"+m.ID.String())
	c.JSON(http.StatusCreated, toMemberResponse(m))
}

func (h *Handler) patchMember(c *gin.Context) {
	p, ok := principal(c)
	if !ok {
		return
	}
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		httpx.Error(c, err)
		return
	}
	var req memberPatch
	if err := httpx.BindJSON(c, &req); err != nil {
		httpx.Error(c, err)
		return
	}
	m, err := h.svc.SetMemberRoles(c.Request.Context(), p, id, req.Roles)
	if err != nil {
		httpx.Error(c, err) // may be 409 last_admin
		return
	}
	c.JSON(http.StatusOK, toMemberResponse(m))
}

func (h *Handler) removeMember(c *gin.Context) {
	p, ok := principal(c)
	if !ok {
		return
	}
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		httpx.Error(c, err)
		return
	}
	if err := h.svc.RemoveMember(c.Request.Context(), p, id); err != nil {
		httpx.Error(c, err) // may be 409 last_admin
		return
	}
	c.Status(http.StatusNoContent)
}
