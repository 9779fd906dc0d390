package billing

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// Handler serves a tenant's GET /v1/usage and the operator's usage report
// and billing exports under /admin/v1.
type Handler struct {
	reports *Reporter
	exports *Exporter
	now     func() time.Time
}

// NewHandler returns the billing handlers.
func NewHandler(reports *Reporter, exports *Exporter) *Handler {
	return &Handler{reports: reports, exports: exports, now: time.Now}
}

// Routes registers the tenant's routes on the /v1 router.
func (h *Handler) Routes(r *httpx.Router) {
	r.Handle(http.MethodGet, "/usage", "usage:read", httpx.Handle(h.usage))
}

// AdminRoutes registers the operator routes on the /admin/v1 router.
func (h *Handler) AdminRoutes(r *httpx.Router, permission string) {
	r.Handle(http.MethodGet, "/usage", permission, httpx.Handle(h.adminUsage))
	r.Handle(http.MethodPost, "/billing/exports", permission, httpx.Handle(h.createExport))
	r.Handle(http.MethodGet, "/billing/exports/:id/download", permission, httpx.Handle(h.download))
}

// MeterUsageResponse is one meter's usage as the API shows it.
type MeterUsageResponse struct {
	Meter string `json:"meter"`
	// Currency is the currency a money meter counts in; null for counts.
	Currency      *string   `json:"currency"`
	Used          int64     `json:"used"`
	Included      int64     `json:"included"`
	Remaining     int64     `json:"remaining"`
	Overage       int64     `json:"overage"`
	OverageAmount int64     `json:"overage_amount"`
	PriceCurrency string    `json:"price_currency"`
	HardLimit     bool      `json:"hard_limit"`
	ResetsAt      time.Time `json:"resets_at"`
}

// UsageResponse is a tenant's usage in a period, for GET /v1/usage.
type UsageResponse struct {
	Period string               `json:"period"`
	Plan   string               `json:"plan"`
	Meters []MeterUsageResponse `json:"meters"`
}

// TenantUsageResponse is one tenant's entry in GET /admin/v1/usage.
type TenantUsageResponse struct {
	TenantID uuid.UUID            `json:"tenant_id"`
	Slug     string               `json:"slug"`
	Plan     string               `json:"plan"`
	Meters   []MeterUsageResponse `json:"meters"`
}

// AdminUsageResponse is a page of GET /admin/v1/usage.
type AdminUsageResponse struct {
	Period string `json:"period"`
	httpx.List[TenantUsageResponse]
}

// ExportResponse is an issued export as the API shows it.
type ExportResponse struct {
	ID        uuid.UUID `json:"id"`
	Period    string    `json:"period"`
	Format    Format    `json:"format"`
	Rows      int64     `json:"rows"`
	Bytes     int64     `json:"bytes"`
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
	// ClosedPeriod is true when this export closed the period.
	ClosedPeriod bool `json:"closed_period"`
}

func toMeterResponses(ms []MeterUsage) []MeterUsageResponse {
	out := make([]MeterUsageResponse, len(ms))
	for i, m := range ms {
		out[i] = MeterUsageResponse{
			Meter: m.Meter, Used: m.Used, Included: m.Included, Remaining: m.Remaining,
			Overage: m.Overage, OverageAmount: m.OverageAmount, PriceCurrency: m.PriceCurrency,
			HardLimit: m.HardLimit, ResetsAt: m.ResetsAt.UTC(),
		}
		if m.Currency != "" {
			out[i].Currency = &m.Currency
		}
	}
	return out
}

// periodParam reads ?period=YYYY-MM, the current month (UTC) by default.
func (h *Handler) periodParam(c *gin.Context) (string, error) {
	p, ok := c.GetQuery("period")
	if !ok {
		return PeriodOf(h.now()), nil
	}
	if _, _, err := monthBounds(p); err != nil {
		return "", err
	}
	return p, nil
}

func (h *Handler) usage(c *gin.Context) error {
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		return err
	}
	period, err := h.periodParam(c)
	if err != nil {
		return err
	}
	rep, err := h.reports.TenantUsage(c.Request.Context(), tenantID, period)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, UsageResponse{Period: rep.Period, Plan: rep.Plan, Meters: toMeterResponses(rep.Meters)})
	return nil
}

func (h *Handler) adminUsage(c *gin.Context) error {
	period, err := h.periodParam(c)
	if err != nil {
		return err
	}
	page, err := httpx.ParsePage(c)
	if err != nil {
		return err
	}
	reps, err := h.reports.AllUsage(c.Request.Context(), period, page.After, page.Limit)
	if err != nil {
		return err
	}
	out := make([]TenantUsageResponse, len(reps))
	for i, r := range reps {
		out[i] = TenantUsageResponse{TenantID: r.TenantID, Slug: r.TenantSlug, Plan: r.Plan, Meters: toMeterResponses(r.Meters)}
	}
	c.JSON(http.StatusOK, AdminUsageResponse{
		Period: period,
		List:   httpx.NewList(out, page.Limit, func(r TenantUsageResponse) uuid.UUID { return r.TenantID }),
	})
	return nil
}

type exportRequest struct {
	Period string `json:"period"`
	Format string `json:"format"`
}

func (h *Handler) createExport(c *gin.Context) error {
	var req exportRequest
	if err := httpx.BindJSON(c, &req); err != nil {
		return err
	}
	var fields fault.Fields
	if _, _, err := monthBounds(req.Period); err != nil {
		fields = append(fields, ErrBadPeriod.Fields...)
	}
	format, err := ParseFormat(req.Format)
	if err != nil {
		fields = append(fields, ErrBadFormat.Fields...)
	}
	if err := fields.Err(); err != nil {
		return err
	}
	by := "operator"
	if p, ok := identity.FromContext(c.Request.Context()); ok {
		by = p.Actor()
	}
	extendWriteDeadline(c)
	x, err := h.exports.Issue(c.Request.Context(), req.Period, format, by, io.Discard, nil)
	if err != nil {
		return err
	}
	c.Header("Location", "/admin/v1/billing/exports/"+x.ID.String()+"/download")
	c.JSON(http.StatusCreated, ExportResponse{
		ID: x.ID, Period: x.Period, Format: x.Format, Rows: x.Rows, Bytes: x.Bytes, SHA256: x.SHA256,
		CreatedAt: x.CreatedAt, ClosedPeriod: x.ClosedPeriod,
	})
	return nil
}

func (h *Handler) download(c *gin.Context) error {
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request.Context()
	x, err := h.exports.Get(ctx, id)
	if err != nil {
		return err
	}
	etag := `"` + x.SHA256 + `"`
	if httpx.NoneMatch(c.GetHeader("If-None-Match"), etag) {
		c.Header("ETag", etag)
		c.Status(http.StatusNotModified)
		return nil
	}
	extendWriteDeadline(c)
	started := false
	err = h.exports.Download(ctx, x, func() io.Writer {
		started = true
		w := c.Writer
		w.Header().Set("Content-Type", x.Format.ContentType())
		w.Header().Set("Content-Disposition", `attachment; filename="`+x.Format.FileName(x.Period)+`"`)
		w.Header().Set("Content-Length", strconv.FormatInt(x.Bytes, 10))
		w.Header().Set("ETag", etag)
		if sum, err := hex.DecodeString(x.SHA256); err == nil {
			b64 := base64.StdEncoding.EncodeToString(sum)
			w.Header().Set("Repr-Digest", "sha-256=:"+b64+":")
			w.Header().Set("Digest", "SHA-256="+b64)
		}
		w.Header().Set("Cache-Control", "private, no-store")
		w.WriteHeader(http.StatusOK)
		return w
	})
	if err == nil {
		return nil
	}
	if !started {
		return err
	}
	// The bytes sent no longer match the ETag: cut the response so the
	// client sees a failed transfer rather than a file that lies.
	slog.ErrorContext(ctx, "billing export changed while downloading", "export", x.ID, "err", err)
	panic(http.ErrAbortHandler)
}

// exportDeadline is how long an export request may take to answer, past
// the server's WriteTimeout: an export of many tenants is computed (and a
// download regenerated and checked) before the first byte is written.
const exportDeadline = 30 * time.Minute

func extendWriteDeadline(c *gin.Context) {
	err := http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(exportDeadline))
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		slog.WarnContext(c.Request.Context(), "billing export: cannot extend the write deadline", "err", err)
	}
}
