package gdpr

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// permExport is the permission of the export routes (admin has it).
const permExport = "tenant:export"

// Handler serves the export routes (/v1) and the erasure route (/admin/v1).
type Handler struct {
	exports *Exporter
	eraser  *Eraser
}

// NewHandler returns a Handler.
func NewHandler(exports *Exporter, eraser *Eraser) *Handler {
	return &Handler{exports: exports, eraser: eraser}
}

// Routes registers the tenant's export routes on r, mounted on /v1.
func (h *Handler) Routes(r *httpx.Router) {
	r.Handle(http.MethodPost, "/tenant/exports", permExport, httpx.Handle(h.requestExport))
	r.Handle(http.MethodGet, "/tenant/exports/:id", permExport, httpx.Handle(h.getExport))
	r.Handle(http.MethodGet, "/tenant/exports/:id/download", permExport, httpx.Handle(h.download))
}

// AdminRoutes registers the erasure route on the /admin/v1 router.
func (h *Handler) AdminRoutes(r *httpx.Router, permission string) {
	r.Handle(http.MethodDelete, "/tenants/:id", permission, httpx.Handle(h.erase))
}

// exportJSON is an export as the API shows it; never its archive.
type exportJSON struct {
	ID            uuid.UUID  `json:"id"`
	Status        string     `json:"status"`
	FailureReason *string    `json:"failure_reason"`
	Size          *int64     `json:"size"`
	SHA256        *string    `json:"sha256"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	FinishedAt    *time.Time `json:"finished_at"`
}

// exports is how the API shows exports.
var exports = httpx.Resource[Export, exportJSON]{
	Render: toJSON,
	ID:     func(e exportJSON) uuid.UUID { return e.ID },
}

func toJSON(e Export) exportJSON {
	out := exportJSON{ID: e.ID, Status: e.Status, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt, FinishedAt: e.FinishedAt}
	if e.FailureReason != "" {
		out.FailureReason = &e.FailureReason
	}
	if e.Status == StatusSucceeded {
		out.Size, out.SHA256 = &e.Size, &e.SHA256
	}
	return out
}

func (h *Handler) requestExport(c *gin.Context) error {
	p, err := httpx.TenantPrincipal(c)
	if err != nil {
		return err
	}
	e, err := h.exports.Request(c.Request.Context(), p.TenantID, p.Actor())
	if err != nil {
		return err
	}
	c.Header("Location", "/v1/tenant/exports/"+e.ID.String())
	c.JSON(http.StatusAccepted, toJSON(e))
	return nil
}

func (h *Handler) getExport(c *gin.Context) error {
	return exports.Get(c, h.exports.Get)
}

func (h *Handler) download(c *gin.Context) error {
	tenantID, id, err := exports.TenantAndID(c)
	if err != nil {
		return err
	}
	e, archive, err := h.exports.Archive(c.Request.Context(), tenantID, id)
	if err != nil {
		return err
	}
	c.Header("Content-Disposition", `attachment; filename="tenantd-export-`+e.ID.String()+`.tar.gz"`)
	c.Header("Cache-Control", "no-store")
	c.Header("ETag", `"`+e.SHA256+`"`)
	c.Data(http.StatusOK, "application/gzip", archive)
	return nil
}

func (h *Handler) erase(c *gin.Context) error {
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		return err
	}
	confirm, ok := c.GetQuery("confirm")
	if !ok || confirm == "" {
		return fault.Invalid(fault.Field("confirm", "is required: the tenant's slug"))
	}
	_, body, err := h.eraser.Erase(c.Request.Context(), id, confirm)
	if err != nil {
		return err
	}
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "application/json", body)
	return nil
}
