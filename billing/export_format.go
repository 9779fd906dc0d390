package billing

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/tenantd/tenantd/internal/fault"
)

// Format is the file format of a billing export.
type Format string

// The export formats. Both are UTF-8 with LF line endings, integers only.
const (
	// FormatCSV is RFC 4180 CSV with a header line, LF line endings.
	FormatCSV Format = "csv"
	// FormatJSONL is JSON Lines: one object per line, keys in a fixed order.
	FormatJSONL Format = "jsonl"
)

// ErrBadFormat is the error for an unknown export format.
var ErrBadFormat = fault.Invalid(fault.Field("format", "must be csv, jsonl, cloudevents or stripe-meter-events"))

// ParseFormat checks an export format given by name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatCSV, FormatJSONL, FormatCloudEvents, FormatStripeMeterEvents:
		return f, nil
	}
	return "", ErrBadFormat
}

// checkExport checks the period and the format of an export as a client
// gives them: ErrBadPeriod, ErrBadFormat, or nil.
func checkExport(period, format string) error {
	if _, _, err := monthBounds(period); err != nil {
		return err
	}
	_, err := ParseFormat(format)
	return err
}

// ContentType is the media type the format is served with.
func (f Format) ContentType() string {
	if f != FormatCSV {
		return "application/x-ndjson"
	}
	return "text/csv; charset=utf-8"
}

// FileName is the export's conventional file name.
func (f Format) FileName(period string) string {
	if f == FormatCloudEvents || f == FormatStripeMeterEvents {
		return "tenantd-billing-" + period + "." + string(f) + ".jsonl"
	}
	return "tenantd-billing-" + period + "." + string(f)
}

// Line is one line of a billing export: what one tenant is billed for one
// meter (and meter currency) in the period. The field order is the CSV
// column order and the JSON key order; every quantity and amount is an
// integer, amounts in minor units of Currency.
type Line struct {
	// Period is the billing period exported, YYYY-MM.
	Period string `json:"period"`
	// Status is "final" for a closed period, "provisional" for a preview
	// of one that is still open.
	Status     string `json:"status"`
	TenantID   string `json:"tenant_id"`
	TenantSlug string `json:"tenant_slug"`
	// Plan is the tenant's plan when the period was closed.
	Plan  string `json:"plan"`
	Meter string `json:"meter"`
	// MeterCurrency is the currency a money meter (payment_volume) counted
	// in; "" for meters that count things and for meters without usage.
	MeterCurrency string `json:"meter_currency"`
	// Kind is "usage" for the period's own usage, "adjustment" for counts
	// of an earlier, already closed month (UsagePeriod) that arrived late.
	Kind        string `json:"line"`
	UsagePeriod string `json:"usage_period"`
	Quantity    int64  `json:"quantity"`
	Included    int64  `json:"included"`
	// Limit is "hard" (usage past it is refused, never billed) or "soft".
	Limit     string `json:"limit"`
	Billable  int64  `json:"billable"`
	UnitSize  int64  `json:"unit_size"`
	UnitPrice int64  `json:"unit_price"`
	// Amount is ceil(Billable / UnitSize) × UnitPrice for usage lines; for
	// adjustments, the increase of the origin month's amount.
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// csvHeader names the CSV columns, in Line's order.
var csvHeader = []string{"period", "status", "tenant_id", "tenant_slug", "plan", "meter", "meter_currency",
	"line", "usage_period", "quantity", "included", "limit", "billable", "unit_size", "unit_price", "amount", "currency"}

// lineEncoder writes export lines in one format.
type lineEncoder interface {
	begin() error
	encode(l *Line) error
	end() error
}

func newLineEncoder(f Format, w io.Writer) lineEncoder {
	if f == FormatJSONL {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return jsonlEncoder{enc: enc}
	}
	return &csvEncoder{w: csv.NewWriter(w), rec: make([]string, len(csvHeader))}
}

type csvEncoder struct {
	w   *csv.Writer
	rec []string
}

func (e *csvEncoder) begin() error { return e.w.Write(csvHeader) }

func (e *csvEncoder) encode(l *Line) error {
	r := e.rec
	r[0], r[1], r[2], r[3], r[4], r[5], r[6] = l.Period, l.Status, l.TenantID, l.TenantSlug, l.Plan, l.Meter, l.MeterCurrency
	r[7], r[8] = l.Kind, l.UsagePeriod
	r[9], r[10], r[11] = strconv.FormatInt(l.Quantity, 10), strconv.FormatInt(l.Included, 10), l.Limit
	r[12], r[13] = strconv.FormatInt(l.Billable, 10), strconv.FormatInt(l.UnitSize, 10)
	r[14], r[15], r[16] = strconv.FormatInt(l.UnitPrice, 10), strconv.FormatInt(l.Amount, 10), l.Currency
	return e.w.Write(r)
}

func (e *csvEncoder) end() error {
	e.w.Flush()
	if err := e.w.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

type jsonlEncoder struct{ enc *json.Encoder }

func (jsonlEncoder) begin() error { return nil }

func (e jsonlEncoder) encode(l *Line) error {
	if err := e.enc.Encode(l); err != nil {
		return fmt.Errorf("write json line: %w", err)
	}
	return nil
}

func (jsonlEncoder) end() error { return nil }
