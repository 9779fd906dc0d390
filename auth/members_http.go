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
	r.Collection("/members", "members:read", "members:write", httpx.Collection{
		List: h.listMembers, Create: h.addMember, Update: h.patchMember, Delete: h.removeMember,
	})
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

// members is how the API lists members.
var members = httpx.Resource[Member, MemberResponse]{
	Render: toMemberResponse,
	ID:     func(m MemberResponse) uuid.UUID { return m.ID },
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
	return members.List(c, h.svc.ListMembers)
}

func (h *Handler) addMember(c *gin.Context) error {
	p, req, err := bindAs[memberRequest](c)
	if err != nil {
		return err
	}
	m, err := h.svc.AddMember(c.Request.Context(), p, NewMember(req))
	if err != nil {
		return err
	}
	httpx.WriteCreated(c, m.ID, toMemberResponse(m))
	return nil
}

func (h *Handler) patchMember(c *gin.Context) error {
	p, id, err := principalAndID(c)
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
	return deleteByID(c, h.svc.RemoveMember)
}
