package auth

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/httpx"
)

// RolesHandler serves the /v1/roles routes.
type RolesHandler struct {
	rbac *RBAC
}

// NewRolesHandler returns the role handlers on r.
func NewRolesHandler(r *RBAC) *RolesHandler { return &RolesHandler{rbac: r} }

// Routes registers the role routes on the /v1 router.
func (h *RolesHandler) Routes(r *httpx.Router) {
	r.Handle(http.MethodGet, "/roles", "roles:read", httpx.Handle(h.list))
	r.Handle(http.MethodPost, "/roles", "roles:write", httpx.Handle(h.create))
	r.Handle(http.MethodPatch, "/roles/:name", "roles:write", httpx.Handle(h.update))
	r.Handle(http.MethodDelete, "/roles/:name", "roles:write", httpx.Handle(h.delete))
}

// RoleResponse is a role as clients see it.
type RoleResponse struct {
	Name        string   `json:"name"`
	Permissions []string `json:"permissions"`
	Builtin     bool     `json:"builtin"`
}

func toRoleResponse(r Role) RoleResponse {
	perms := r.Permissions
	if perms == nil {
		perms = []string{}
	}
	return RoleResponse{Name: r.Name, Permissions: perms, Builtin: r.Builtin}
}

// roleRequest is the body of POST /v1/roles.
type roleRequest struct {
	Name        string   `json:"name"`
	Permissions []string `json:"permissions"`
}

// rolePatch is the body of PATCH /v1/roles/{name}.
type rolePatch struct {
	Permissions []string `json:"permissions"`
}

// list answers every role of the tenant in one page: built-ins plus at most
// MaxCustomRoles of its own, so next_cursor is always null.
func (h *RolesHandler) list(c *gin.Context) error {
	p, err := httpx.TenantPrincipal(c)
	if err != nil {
		return err
	}
	roles, err := h.rbac.ListRoles(c.Request.Context(), p.TenantID)
	if err != nil {
		return err
	}
	out := httpx.List[RoleResponse]{Data: make([]RoleResponse, len(roles))}
	for i, r := range roles {
		out.Data[i] = toRoleResponse(r)
	}
	c.JSON(http.StatusOK, out)
	return nil
}

func (h *RolesHandler) create(c *gin.Context) error {
	p, req, err := bindAs[roleRequest](c)
	if err != nil {
		return err
	}
	role, err := h.rbac.CreateRole(c.Request.Context(), p, Role{Name: req.Name, Permissions: req.Permissions})
	if err != nil {
		return err
	}
	c.Header("ETag", role.ETag())
	c.Header("Location", "/v1/roles/"+role.Name)
	c.JSON(http.StatusCreated, toRoleResponse(role))
	return nil
}

func (h *RolesHandler) update(c *gin.Context) error {
	p, req, err := bindAs[rolePatch](c)
	if err != nil {
		return err
	}
	role, err := h.rbac.UpdateRole(c.Request.Context(), p, c.Param("name"), req.Permissions, c.GetHeader("If-Match"))
	if err != nil {
		return err
	}
	c.Header("ETag", role.ETag())
	c.JSON(http.StatusOK, toRoleResponse(role))
	return nil
}

func (h *RolesHandler) delete(c *gin.Context) error {
	p, err := httpx.TenantPrincipal(c)
	if err != nil {
		return err
	}
	if err := h.rbac.DeleteRole(c.Request.Context(), p, c.Param("name")); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}
