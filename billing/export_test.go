package billing_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/billing"
)

// issue exports period in format to memory and checks the record against
// the bytes.
func issue(t *testing.T, e *billing.Exporter, period string, f billing.Format) (billing.Export, []byte) {
	t.Helper()
	var buf bytes.Buffer
	x, err := e.Issue(t.Context(), period, f, "test", &buf, nil)
	if err != nil {
		t.Fatalf("export %s %s: %v", period, f, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if got, want := x.SHA256, hex.EncodeToString(sum[:]); got != want {
		t.Errorf("export %s %s: got sha256 %s, want %s (of the bytes written)", period, f, got, want)
	}
	if got, want := x.Bytes, int64(buf.Len()); got != want {
		t.Errorf("export %s %s: got bytes %d, want %d", period, f, got, want)
	}
	lines := int64(bytes.Count(buf.Bytes(), []byte("\n")))
	if f == billing.FormatCSV {
		lines-- // the header
	}
	if x.Rows != lines {
		t.Errorf("export %s %s: got rows %d, want %d lines", period, f, x.Rows, lines)
	}
	return x, buf.Bytes()
}

// TestExportGolden exports the golden data set: September 2026, then the
// late counts that arrive after September was closed, then October with
// their adjustment lines; each export is compared with its golden file,
// run twice for identical bytes, and September's is checked unchanged
// after the late counts, a plan change and a rename.
func TestExportGolden(t *testing.T) {
	t.Parallel()
	x := newGoldenDB(t)
	e := billing.NewExporter(x.app)
	formats := []billing.Format{billing.FormatCSV, billing.FormatJSONL}

	september := map[billing.Format][]byte{}
	for _, f := range formats {
		first, b1 := issue(t, e, "2026-09", f)
		if f == billing.FormatCSV && !first.ClosedPeriod {
			t.Errorf("first export of 2026-09: got ClosedPeriod false, want true")
		}
		checkGolden(t, "export-2026-09."+string(f), b1)
		second, b2 := issue(t, e, "2026-09", f)
		if !bytes.Equal(b1, b2) || first.SHA256 != second.SHA256 {
			t.Errorf("2026-09 %s twice: got different bytes (sha256 %s, %s), want identical", f, first.SHA256, second.SHA256)
		}
		if second.ClosedPeriod {
			t.Errorf("second export of 2026-09 %s: got ClosedPeriod true, want false", f)
		}
		if first.ID == second.ID {
			t.Errorf("two exports got the same id %s", first.ID)
		}
		september[f] = b1
	}

	addLateCounts(t, x)

	for _, f := range formats {
		_, again := issue(t, e, "2026-09", f)
		if !bytes.Equal(again, september[f]) {
			t.Errorf("2026-09 %s after late counts, plan change and rename: got changed bytes, want the issued export", f)
		}
		_, oct := issue(t, e, "2026-10", f)
		checkGolden(t, "export-2026-10."+string(f), oct)
		_, oct2 := issue(t, e, "2026-10", f)
		if !bytes.Equal(oct, oct2) {
			t.Errorf("2026-10 %s twice: got different bytes, want identical", f)
		}
	}
}

// TestExportLines checks the meaning of the golden files line by line, so
// a golden file cannot silently bless a wrong number.
func TestExportLines(t *testing.T) {
	t.Parallel()
	x := newGoldenDB(t)
	e := billing.NewExporter(x.app)
	_, sep := issue(t, e, "2026-09", billing.FormatJSONL)
	addLateCounts(t, x)
	_, oct := issue(t, e, "2026-10", billing.FormatJSONL)

	type key struct{ slug, meter, currency, kind, usagePeriod string }
	parse := func(b []byte) (map[key]billing.Line, []key) {
		out := map[key]billing.Line{}
		var order []key
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			dec := json.NewDecoder(strings.NewReader(sc.Text()))
			dec.DisallowUnknownFields()
			var l billing.Line
			if err := dec.Decode(&l); err != nil {
				t.Fatalf("decode %q: %v", sc.Text(), err)
			}
			k := key{l.TenantSlug, l.Meter, l.MeterCurrency, l.Kind, l.UsagePeriod}
			if _, dup := out[k]; dup {
				t.Errorf("line %+v appears twice", k)
			}
			out[k] = l
			order = append(order, k)
		}
		return out, order
	}
	sepLines, sepOrder := parse(sep)
	octLines, _ := parse(oct)

	tests := []struct {
		name  string
		lines map[key]billing.Line
		key   key
		// quantity, included, billable, amount
		want [4]int64
		plan string
	}{
		{"soft overage per started unit", sepLines, key{"acme", "api_requests", "", "usage", "2026-09"}, [4]int64{5_500_001, 5_000_000, 500_001, 5010}, "pro"},
		{"orders over", sepLines, key{"acme", "orders_created", "", "usage", "2026-09"}, [4]int64{10_050, 10_000, 50, 100}, "pro"},
		{"money meter, first currency", sepLines, key{"acme", "payment_volume", "EUR", "usage", "2026-09"}, [4]int64{150_000_000, 100_000_000, 50_000_000, 25_000}, "pro"},
		{"money meter, second currency", sepLines, key{"acme", "payment_volume", "USD", "usage", "2026-09"}, [4]int64{20_000, 100_000_000, 0, 0}, "pro"},
		{"gauge: highest hour", sepLines, key{"acme", "active_products", "", "usage", "2026-09"}, [4]int64{10_500, 10_000, 500, 500}, "pro"},
		{"hard limit never billed", sepLines, key{"beta-shop", "api_requests", "", "usage", "2026-09"}, [4]int64{120_000, 100_000, 0, 0}, "free"},
		{"exactly the included quantity", sepLines, key{"abb", "orders_created", "", "usage", "2026-09"}, [4]int64{10_000, 10_000, 0, 0}, "pro"},
		{"no usage: a zero line", sepLines, key{"suspended-co", "api_requests", "", "usage", "2026-09"}, [4]int64{0, 5_000_000, 0, 0}, "pro"},
		{"created in the last second", sepLines, key{"ab-c", "orders_created", "", "usage", "2026-09"}, [4]int64{0, 10_000, 0, 0}, "pro"},
		{"new plan from the next period", octLines, key{"acme", "api_requests", "", "usage", "2026-10"}, [4]int64{1_000, 100_000_000, 0, 0}, "enterprise"},
		{"adjustment: more units, no more money", octLines, key{"acme", "api_requests", "", "adjustment", "2026-09"}, [4]int64{700, 5_000_000, 700, 0}, "pro"},
		{"adjustment of a gauge: the rise of the peak", octLines, key{"acme", "active_products", "", "adjustment", "2026-09"}, [4]int64{500, 10_000, 500, 500}, "pro"},
		{"adjustment under a hard limit", octLines, key{"beta-store", "orders_created", "", "adjustment", "2026-09"}, [4]int64{2, 100, 0, 0}, "free"},
		{"adjustment in a new currency", octLines, key{"zeta", "payment_volume", "GBP", "adjustment", "2026-09"}, [4]int64{5_000, 10_000_000_000, 0, 0}, "enterprise"},
		{"enterprise overage", octLines, key{"zeta", "payment_volume", "EUR", "usage", "2026-10"}, [4]int64{10_000_001_000, 10_000_000_000, 1_000, 2}, "enterprise"},
		{"tenant created in the period", octLines, key{"late-comer", "orders_created", "", "usage", "2026-10"}, [4]int64{3, 10_000, 0, 0}, "pro"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ok := tt.lines[tt.key]
			if !ok {
				t.Fatalf("got no line %+v", tt.key)
			}
			if got := [4]int64{l.Quantity, l.Included, l.Billable, l.Amount}; got != tt.want {
				t.Errorf("got quantity, included, billable, amount %v, want %v", got, tt.want)
			}
			if l.Plan != tt.plan {
				t.Errorf("got plan %s, want %s", l.Plan, tt.plan)
			}
			if l.Status != "final" {
				t.Errorf("got status %s, want final", l.Status)
			}
		})
	}

	t.Run("who is in which period", func(t *testing.T) {
		slugs := func(lines map[key]billing.Line) map[string]int {
			out := map[string]int{}
			for k := range lines {
				out[k.slug]++
			}
			return out
		}
		sepSlugs, octSlugs := slugs(sepLines), slugs(octLines)
		for _, s := range []string{"late-comer", "future"} {
			if sepSlugs[s] != 0 {
				t.Errorf("2026-09: got %d lines of %s, created after the period, want 0", sepSlugs[s], s)
			}
		}
		if octSlugs["future"] != 0 {
			t.Errorf("2026-10: got %d lines of future, created after the period, want 0", octSlugs["future"])
		}
		// Every tenant gets a line per meter, suspended ones too.
		if got := sepSlugs["suspended-co"]; got != 4 {
			t.Errorf("2026-09: got %d lines of suspended-co, want 4 (one per meter)", got)
		}
		if got := octSlugs["beta-shop"]; got != 0 {
			t.Errorf("2026-10: got %d lines under the old slug beta-shop, want 0", got)
		}
	})

	t.Run("order", func(t *testing.T) {
		var got []string
		for _, k := range sepOrder {
			if len(got) == 0 || got[len(got)-1] != k.slug {
				got = append(got, k.slug)
			}
		}
		want := []string{"ab-c", "abb", "acme", "beta-shop", "suspended-co", "zeta"}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("got tenants in order %v, want %v (bytewise)", got, want)
		}
	})
}

// TestExportCSVShape checks the CSV is well formed: the header, the same
// number of fields on every line, LF endings, integers only.
func TestExportCSVShape(t *testing.T) {
	t.Parallel()
	x := newGoldenDB(t)
	_, b := issue(t, billing.NewExporter(x.app), "2026-09", billing.FormatCSV)
	if bytes.Contains(b, []byte("\r")) {
		t.Error("got a CR in the CSV, want LF line endings only")
	}
	r := csv.NewReader(bytes.NewReader(b))
	records, err := r.ReadAll()
	if err != nil {
		t.Fatalf("parse csv: %v", err)
	}
	wantHeader := "period,status,tenant_id,tenant_slug,plan,meter,meter_currency,line,usage_period,quantity,included,limit,billable,unit_size,unit_price,amount,currency"
	if got := strings.Join(records[0], ","); got != wantHeader {
		t.Errorf("got header %s, want %s", got, wantHeader)
	}
	// 6 tenants x 4 meters, plus acme's payment volume in a second currency.
	if got, want := len(records)-1, 6*4+1; got != want {
		t.Errorf("got %d lines, want %d", got, want)
	}
	for i, rec := range records[1:] {
		for _, col := range []int{9, 10, 12, 13, 14, 15} {
			for _, c := range rec[col] {
				if c < '0' || c > '9' {
					t.Errorf("line %d column %s: got %q, want a non-negative integer", i+1, records[0][col], rec[col])
					break
				}
			}
		}
	}
}

// TestExportOpenPeriod proves an open period cannot be issued, only
// previewed, and that a preview closes nothing.
func TestExportOpenPeriod(t *testing.T) {
	t.Parallel()
	x := newGoldenDB(t)
	e := billing.NewExporter(x.app)
	now := time.Now().UTC().Format("2006-01")
	next := time.Now().UTC().AddDate(0, 1, 0).Format("2006-01")

	for _, p := range []string{now, next} {
		if _, err := e.Issue(t.Context(), p, billing.FormatCSV, "test", io.Discard, nil); !errors.Is(err, billing.ErrPeriodOpen) {
			t.Errorf("issue %s: got error %v, want ErrPeriodOpen", p, err)
		}
	}
	var buf bytes.Buffer
	pv, err := e.Preview(t.Context(), now, billing.FormatJSONL, &buf, nil)
	if err != nil {
		t.Fatalf("preview %s: %v", now, err)
	}
	if pv.Rows == 0 || !strings.Contains(buf.String(), `"status":"provisional"`) || strings.Contains(buf.String(), `"status":"final"`) {
		t.Errorf("preview of %s: got %d rows %q…, want provisional lines", now, pv.Rows, buf.String()[:min(buf.Len(), 200)])
	}
	var closed int64
	if err := x.app.Unscoped(t.Context()).Raw("SELECT count(*) FROM billing_periods WHERE period = ?", now).Scan(&closed).Error; err != nil {
		t.Fatal(err)
	}
	if closed != 0 {
		t.Errorf("preview of %s: got the period closed, want it open", now)
	}
	if _, err := e.Issue(t.Context(), "2026-09", billing.FormatCSV, "test", io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Preview(t.Context(), "2026-09", billing.FormatCSV, io.Discard, nil); !errors.Is(err, billing.ErrPeriodClosed) {
		t.Errorf("preview of closed 2026-09: got error %v, want ErrPeriodClosed", err)
	}
	for _, bad := range []string{"2026-13", "2026-1", "26-01", "2026-00", "", "2026-01-01"} {
		if _, err := e.Issue(t.Context(), bad, billing.FormatCSV, "test", io.Discard, nil); !errors.Is(err, billing.ErrBadPeriod) {
			t.Errorf("issue %q: got error %v, want ErrBadPeriod", bad, err)
		}
	}
	if _, err := e.Issue(t.Context(), "2026-09", billing.Format("xml"), "test", io.Discard, nil); !errors.Is(err, billing.ErrBadFormat) {
		t.Errorf("issue xml: got error %v, want ErrBadFormat", err)
	}
}
