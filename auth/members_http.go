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
	r.Handle(http.MethodGet, "/members", "members:read", httpx.Handle(h.listMembers))
	r.Handle(http.MethodPost, "/members", "members:write", httpx.Handle(h.addMember))
	r.Handle(http.MethodPatch, "/members/:id", "members:write", httpx.Handle(h.patchMember))
	r.Handle(http.MethodDelete, "/members/:id", "members:write", httpx.Handle(h.removeMember))
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

func (h *Handler) listMembers(c *gin.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	page, err := httpx.ParsePage(c)
	if err != nil {
		return err
	}
	ms, err := h.svc.ListMembers(c.Request.Context(), p.TenantID, page.After, page.Limit)
	if err != nil {
		return err
	}
	httpx.WriteList(c, page, ms, toMemberResponse, func(m MemberResponse) uuid.UUID { return m.ID })
	return nil
}

func (h *Handler) addMember(c *gin.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	var req memberRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	m, err := h.svc.AddMember(c.Request.Context(), p, NewMember(req))
	if err != nil {
		return err
	}
	c.Header("Location", "/v1/members/"+m.ID.String())
	c.JSON(http.StatusCreated, toMemberResponse(m))
	return nil
}

func (h *Handler) patchMember(c *gin.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		return err
	}
	var req memberPatch
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	m, err := h.svc.SetMemberRoles(c.Request.Context(), p, id, req.Roles)
	if err != nil {
		return err // may be 409 last_admin
	}
	c.JSON(http.StatusOK, toMemberResponse(m))
	return nil
}

func (h *Handler) removeMember(c *gin.Context) error {
	p, err := principal(c)
	if err != nil {
		return err
	}
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		return err
	}
	if err := h.svc.RemoveMember(c.Request.Context(), p, id); err != nil {
		return err // may be 409 last_admin
	}
	c.Status(http.StatusNoContent)
	return nil
}
