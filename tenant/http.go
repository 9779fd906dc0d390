package tenant

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

// Handler serves the operator routes under /admin/v1 and a tenant's own
// /v1/tenant.
type Handler struct {
	svc *Service
}

// NewHandler returns the tenant handlers.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// AdminRoutes registers the operator routes on the /admin/v1 router.
func (h *Handler) AdminRoutes(r *httpx.Router, permission string) {
	r.Collection("/tenants", permission, permission, httpx.Collection{
		List: h.list, Create: h.create, Get: h.get, Update: h.update,
	})
	r.Handle(http.MethodGet, "/plans", permission, httpx.Handle(h.plans))
}

// Routes registers the tenant's own routes on the /v1 router.
func (h *Handler) Routes(r *httpx.Router) {
	r.Handle(http.MethodGet, "/tenant", "tenant:read", httpx.Handle(h.self))
	r.Handle(http.MethodPatch, "/tenant", "tenant:write", httpx.Handle(h.updateSelf))
}

// Response is a tenant as the API shows it.
type Response struct {
	ID        uuid.UUID `json:"id"`
	Slug      string    `json:"slug"`
	Name      string    `json:"name"`
	Plan      string    `json:"plan"`
	Status    Status    `json:"status"`
	Settings  Settings  `json:"settings"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// BillingCustomerID is the tenant's customer at the billing provider,
	// set by an operator; null when unset.
	BillingCustomerID *string `json:"billing_customer_id"`
}

// CreatedResponse is a new tenant with its one-time admin key.
type CreatedResponse struct {
	Response
	AdminAPIKey string `json:"admin_api_key"`
}

// ToResponse converts a tenant for the API.
func ToResponse(t Tenant) Response {
	if t.Settings.CORSOrigins == nil {
		t.Settings.CORSOrigins = []string{}
	}
	return Response(t)
}

type createRequest struct {
	Slug string `json:"slug"`
	Name string `json:"name"`
	Plan string `json:"plan"`
}

func (h *Handler) create(c *gin.Context) error {
	var req createRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	t, key, err := h.svc.Create(c.Request.Context(), NewTenant(req))
	if err != nil {
		return err
	}
	c.Header("Cache-Control", "no-store")
	httpx.WriteCreated(c, t.ID, CreatedResponse{Response: ToResponse(t), AdminAPIKey: key})
	return nil
}

// tenants is how the operator's routes show tenants: every tenant's, with
// its ETag.
var tenants = httpx.Resource[Tenant, Response]{
	Render:  ToResponse,
	ID:      func(r Response) uuid.UUID { return r.ID },
	Version: func(t Tenant) int64 { return int64(t.Version) },
	Tenant:  httpx.NoTenant,
}

func (h *Handler) list(c *gin.Context) error {
	return tenants.List(c, func(ctx context.Context, _, after uuid.UUID, limit int) ([]Tenant, error) {
		return h.svc.List(ctx, after, limit)
	})
}

// get answers 200 with the tenant and its ETag, never 304.
func (h *Handler) get(c *gin.Context) error {
	return tenants.Action(c, http.StatusOK, func(ctx context.Context, _, id uuid.UUID) (Tenant, error) {
		return h.svc.Get(ctx, id)
	})
}

type updateRequest struct {
	Name   *string `json:"name"`
	Plan   *string `json:"plan"`
	Status *Status `json:"status"`
	// BillingCustomerID: "" clears it; null or absent leaves it.
	BillingCustomerID *string `json:"billing_customer_id"`
}

func (h *Handler) update(c *gin.Context) error {
	return httpx.Update(c, tenants, func(req updateRequest) (Change, error) { return Change(req), nil },
		func(ctx context.Context, _, id uuid.UUID, ch Change) (Tenant, error) {
			return h.svc.Update(ctx, id, ch)
		})
}

// PlanResponse is a plan as the API shows it.
type PlanResponse struct {
	Name          string `json:"name"`
	DisplayName   string `json:"display_name"`
	RatePerSecond int    `json:"rate_per_second"`
	Burst         int    `json:"burst"`
	MonthlyPrice  int64  `json:"monthly_price"`
	Currency      string `json:"currency"`
}

func (h *Handler) plans(c *gin.Context) error {
	ps, err := h.svc.Plans(c.Request.Context())
	if err != nil {
		return err
	}
	out := make([]PlanResponse, len(ps))
	for i, p := range ps {
		out[i] = PlanResponse(p)
	}
	c.JSON(http.StatusOK, gin.H{"data": out})
	return nil
}

func (h *Handler) self(c *gin.Context) error {
	p, err := httpx.TenantPrincipal(c)
	if err != nil {
		return err
	}
	t, err := h.svc.Self(c.Request.Context(), p.TenantID)
	if err != nil {
		return err
	}
	writeTenant(c, t)
	return nil
}

type selfRequest struct {
	Name *string `json:"name"`
	// Settings is a JSON Merge Patch of the settings (SettingsPatch).
	Settings json.RawMessage `json:"settings"`
}

func (h *Handler) updateSelf(c *gin.Context) error {
	p, err := httpx.TenantPrincipal(c)
	if err != nil {
		return err
	}
	ifVersion, err := ifMatch(c)
	if err != nil {
		return err
	}
	var req selfRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	change := SelfChange{Name: req.Name}
	if req.Settings != nil {
		// Known keys and their types, checked as strictly as any body;
		// null (remove) passes.
		var shape Settings
		if err := httpx.DecodeStrict(req.Settings, &shape); err != nil {
			return underField(err, "settings")
		}
		change.Settings = SettingsPatch(req.Settings)
	}
	t, err := h.svc.UpdateSelf(c.Request.Context(), p, change, ifVersion)
	if err != nil {
		return err
	}
	writeTenant(c, t)
	return nil
}

func writeTenant(c *gin.Context, t Tenant) {
	c.Header("ETag", httpx.VersionETag(int64(t.Version)))
	c.JSON(http.StatusOK, ToResponse(t))
}

// ifMatch reads an If-Match header of the form "<version>".
func ifMatch(c *gin.Context) (*int, error) {
	h := c.GetHeader("If-Match")
	if h == "" {
		return nil, nil
	}
	v, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(h, "W/"), `"`))
	if err != nil {
		return nil, ErrVersionMismatch
	}
	return &v, nil
}

// underField returns err with the fields it names moved under parent
// ("oidc.issuer" becomes "settings.oidc.issuer").
func underField(err error, parent string) error {
	fe, ok := fault.As(err)
	if !ok || len(fe.Fields) == 0 {
		return err
	}
	out := *fe
	out.Fields = make([]fault.FieldError, len(fe.Fields))
	for i, f := range fe.Fields {
		out.Fields[i] = fault.Field(parent+"."+f.Field, f.Message)
		if f.Field == "" || f.Field == "body" {
			out.Fields[i].Field = parent
		}
	}
	return &out
}
