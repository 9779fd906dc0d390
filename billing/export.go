package billing

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
)

// Billing exports. An export covers one ended billing period and closes it:
// the first export of a period computes its lines (billing_close_period) and
// stores them, so that every later export of it, by anyone, gives the same
// bytes, whatever happens to counters, plans, prices or slugs afterwards.
// Counts of a closed month that arrive late are attributed to the next open
// period by the flusher and appear there as adjustment lines. Lines are read
// from a database cursor and written as they come, so memory stays flat
// however many tenants there are.

// Sentinel errors of exports.
var (
	ErrPeriodOpen = fault.Invalid(fault.Field("period",
		"has not ended yet: only an ended period can be exported, and its first export closes it"))
	ErrPeriodClosed = fault.Invalid(fault.Field("period",
		"is closed: its export is final, export it without a preview"))
	ErrExportNotFound = fault.New(fault.NotFound, "billing export not found")
	ErrExportChanged  = fault.New(fault.Conflict,
		"the period's stored lines no longer give this export's bytes (a tenant was erased, or for a Stripe feed a billing_customer_id changed, since it was issued); issue a new export")
)

// Export is the record of an issued export.
type Export struct {
	ID     uuid.UUID
	Period string
	Format Format
	// Rows counts the lines, not the CSV header.
	Rows      int64
	Bytes     int64
	SHA256    string // hex
	CreatedBy string
	CreatedAt time.Time
	// ClosedPeriod is true when this export closed its period (the first
	// export of it). Set by Issue only; not stored.
	ClosedPeriod bool
}

// Preview is what writing the provisional lines of an open period gave.
type Preview struct {
	Period string
	Format Format
	Rows   int64
	Bytes  int64
	SHA256 string
}

// Progress says how far an export has got. TotalTenants is known before the
// first line; a tenant counts when its last line has been written.
type Progress struct {
	Tenants      int64
	TotalTenants int64
	Rows         int64
}

// Exporter issues billing exports from the runtime pool. Its cross-tenant
// reads go through SECURITY DEFINER functions only.
type Exporter struct {
	db *db.DB
}

// NewExporter returns an Exporter.
func NewExporter(d *db.DB) *Exporter { return &Exporter{db: d} }

// Issue closes period if it has ended and is still open, writes its final
// export to w and records it. progress, if not nil, is called as tenants
// are written. A period that has not ended is ErrPeriodOpen.
func (e *Exporter) Issue(ctx context.Context, period string, format Format, createdBy string, w io.Writer, progress func(Progress)) (Export, error) {
	if err := checkExport(period, string(format)); err != nil {
		return Export{}, err
	}
	var state string
	if err := e.db.Worker().Unscoped(ctx).Raw("SELECT billing_close_period(?)", period).Scan(&state).Error; err != nil {
		return Export{}, fmt.Errorf("close billing period %s: %w", period, err)
	}
	if state == "open" {
		return Export{}, ErrPeriodOpen
	}
	sum, err := e.write(ctx, w, period, format, true, progress)
	if err != nil {
		return Export{}, err
	}
	x := Export{
		ID: uuid.Must(uuid.NewV7()), Period: period, Format: format, Rows: sum.rows, Bytes: sum.bytes,
		SHA256: sum.sha256, CreatedBy: createdBy, ClosedPeriod: state == "closed",
	}
	err = e.db.Worker().Unscoped(ctx).Raw(`
		INSERT INTO billing_exports (id, period, format, row_count, byte_count, sha256, created_by)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING created_at`,
		x.ID, x.Period, string(x.Format), x.Rows, x.Bytes, x.SHA256, x.CreatedBy).Scan(&x.CreatedAt).Error
	if err != nil {
		return Export{}, fmt.Errorf("record billing export of %s: %w", period, err)
	}
	x.CreatedAt = x.CreatedAt.UTC()
	return x, nil
}

// Preview writes the lines period would have if it were closed now, marked
// provisional, without closing or recording anything. A closed period is
// ErrPeriodClosed: its export is final.
func (e *Exporter) Preview(ctx context.Context, period string, format Format, w io.Writer, progress func(Progress)) (Preview, error) {
	if err := checkExport(period, string(format)); err != nil {
		return Preview{}, err
	}
	var closed int64
	if err := e.db.Worker().Unscoped(ctx).Raw("SELECT count(*) FROM billing_periods WHERE period = ?", period).Scan(&closed).Error; err != nil {
		return Preview{}, fmt.Errorf("read billing period %s: %w", period, err)
	}
	if closed > 0 {
		return Preview{}, ErrPeriodClosed
	}
	sum, err := e.write(ctx, w, period, format, false, progress)
	if err != nil {
		return Preview{}, err
	}
	return Preview{Period: period, Format: format, Rows: sum.rows, Bytes: sum.bytes, SHA256: sum.sha256}, nil
}

// exportRow is a row of billing_export_rows.
type exportRow struct {
	tenantID                                          uuid.UUID
	meter, meterCurrency, usagePeriod, slug, plan     string
	quantity, included, billable, unitSize, unitPrice int64
	amount                                            int64
	currency                                          string
	hardLimit                                         bool
}

// exportSum is what write produced.
type exportSum struct {
	rows, bytes int64
	sha256      string
}

// write streams the lines of period (stored if final, live otherwise) to w
// in their deterministic order: tenant slug, meter, meter currency (bytes,
// COLLATE "C"), the usage line before adjustments, then adjustments by the
// month they are for.
func (e *Exporter) write(ctx context.Context, w io.Writer, period string, format Format, final bool, progress func(Progress)) (exportSum, error) {
	var total int64
	if progress != nil {
		if err := e.db.Worker().Unscoped(ctx).Raw("SELECT billing_export_tenants(?, ?)", period, final).Scan(&total).Error; err != nil {
			return exportSum{}, fmt.Errorf("count tenants of %s: %w", period, err)
		}
		progress(Progress{TotalTenants: total})
	}
	h := sha256.New()
	counted := &countingWriter{w: io.MultiWriter(w, h)}
	bw := bufio.NewWriterSize(counted, 64<<10)
	// Before the cursor opens: a feed's encoder may read first.
	enc, err := e.encoder(ctx, format, period, final, bw)
	if err != nil {
		return exportSum{}, err
	}
	rows, err := e.db.Worker().Unscoped(ctx).Raw(`
		SELECT tenant_id, meter, meter_currency, usage_period, tenant_slug, plan,
		       quantity, included, billable, unit_size, unit_price, amount, currency, hard_limit
		FROM billing_export_rows(?, ?)
		ORDER BY tenant_slug COLLATE "C", meter COLLATE "C", meter_currency COLLATE "C",
		         usage_period <> ?::text, usage_period COLLATE "C", tenant_id`, period, final, period).Rows()
	if err != nil {
		return exportSum{}, fmt.Errorf("read export lines of %s: %w", period, err)
	}
	defer rows.Close()

	if err := enc.begin(); err != nil {
		return exportSum{}, err
	}
	status := "provisional"
	if final {
		status = "final"
	}
	var (
		r       exportRow
		line    = Line{Period: period, Status: status}
		n       int64
		tenants int64
		last    uuid.UUID
	)
	for rows.Next() {
		if err := rows.Scan(&r.tenantID, &r.meter, &r.meterCurrency, &r.usagePeriod, &r.slug, &r.plan,
			&r.quantity, &r.included, &r.billable, &r.unitSize, &r.unitPrice, &r.amount, &r.currency, &r.hardLimit); err != nil {
			return exportSum{}, fmt.Errorf("scan export line: %w", err)
		}
		if r.tenantID != last {
			if n > 0 {
				tenants++
				if progress != nil {
					progress(Progress{Tenants: tenants, TotalTenants: total, Rows: n})
				}
			}
			last = r.tenantID
			line.TenantID = r.tenantID.String()
		}
		line.TenantSlug, line.Plan, line.Meter, line.MeterCurrency = r.slug, r.plan, r.meter, r.meterCurrency
		line.Kind, line.UsagePeriod = "usage", r.usagePeriod
		if r.usagePeriod != period {
			line.Kind = "adjustment"
		}
		line.Limit = "soft"
		if r.hardLimit {
			line.Limit = "hard"
		}
		line.Quantity, line.Included, line.Billable = r.quantity, r.included, r.billable
		line.UnitSize, line.UnitPrice, line.Amount, line.Currency = r.unitSize, r.unitPrice, r.amount, r.currency
		if err := enc.encode(&line); err != nil {
			return exportSum{}, err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return exportSum{}, fmt.Errorf("read export lines of %s: %w", period, err)
	}
	if f, ok := enc.(*feedEncoder); ok {
		n -= f.skipped // lines of tenants a feed has no customer for
	}
	if err := enc.end(); err != nil {
		return exportSum{}, err
	}
	if err := bw.Flush(); err != nil {
		return exportSum{}, fmt.Errorf("write export: %w", err)
	}
	if n > 0 {
		tenants++
	}
	if progress != nil {
		progress(Progress{Tenants: tenants, TotalTenants: max(total, tenants), Rows: n})
	}
	return exportSum{rows: n, bytes: counted.n, sha256: hex.EncodeToString(h.Sum(nil))}, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Get returns the record of export id.
func (e *Exporter) Get(ctx context.Context, id uuid.UUID) (Export, error) {
	var row struct {
		ID        uuid.UUID
		Period    string
		Format    string
		RowCount  int64
		ByteCount int64
		SHA256    string `gorm:"column:sha256"`
		CreatedBy string
		CreatedAt time.Time
	}
	err := e.db.Worker().Unscoped(ctx).Raw(`
		SELECT id, period, format, row_count, byte_count, sha256, created_by, created_at
		FROM billing_exports WHERE id = ?`, id).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Export{}, ErrExportNotFound
	}
	if err != nil {
		return Export{}, fmt.Errorf("read billing export %s: %w", id, err)
	}
	return Export{
		ID: row.ID, Period: row.Period, Format: Format(row.Format), Rows: row.RowCount, Bytes: row.ByteCount,
		SHA256: row.SHA256, CreatedBy: row.CreatedBy, CreatedAt: row.CreatedAt.UTC(),
	}, nil
}

// Download writes the bytes of export x, regenerated from its period's
// stored lines. It first regenerates them without writing, to check they
// still hash to x.SHA256 (ErrExportChanged otherwise, before any byte is
// written); then calls start, which returns where to write (an HTTP handler
// sets its headers there), and writes them. Should the bytes change between
// the two passes, it returns ErrExportChanged after writing: the caller
// must then discard what it got (an HTTP handler aborts the response).
func (e *Exporter) Download(ctx context.Context, x Export, start func() io.Writer) error {
	check, err := e.write(ctx, io.Discard, x.Period, x.Format, true, nil)
	if err != nil {
		return err
	}
	if check.sha256 != x.SHA256 || check.bytes != x.Bytes {
		return ErrExportChanged
	}
	got, err := e.write(ctx, start(), x.Period, x.Format, true, nil)
	if err != nil {
		return err
	}
	if got.sha256 != x.SHA256 {
		return ErrExportChanged
	}
	return nil
}
