package billing_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/billing"
)

// setCustomer sets a tenant's billing_customer_id through the platform scope.
func setCustomer(t *testing.T, x exportDB, tenantID, customer string) {
	t.Helper()
	err := x.owner.WithPlatform(t.Context(), func(tx *gorm.DB) error {
		return tx.Exec("UPDATE tenants SET billing_customer_id = ? WHERE id = ?", customer, tenantID).Error
	})
	if err != nil {
		t.Fatalf("set billing customer of %s: %v", tenantID, err)
	}
}

// jsonLines decodes every line of b into a generic object.
func jsonLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v", len(out)+1, err)
		}
		out = append(out, m)
	}
	return out
}

// TestFeedsGolden exports the golden data set as cloudevents and
// stripe-meter-events: compared with golden files, identical bytes on a
// second export, ids deterministic and unique, and the shapes CloudEvents
// 1.0 and Stripe's meter events require. A stripe export is refused,
// naming the tenant, while a tenant with usage has no billing_customer_id.
func TestFeedsGolden(t *testing.T) {
	t.Parallel()
	x := newGoldenDB(t)
	e := billing.NewExporter(x.app)
	customers := map[string]string{
		idBeta: "cus_Beta0002", idZeta: "cus_Zeta0003", idAbb: "cus_Abb00004", idAbC: "cus_AbC00005",
		idSuspended: "cus_Susp0006", idLate: "cus_Late0007", idFuture: "cus_Futr0008",
	}
	for id, c := range customers {
		setCustomer(t, x, id, c)
	}

	var buf bytes.Buffer
	_, err := e.Issue(t.Context(), "2026-09", billing.FormatStripeMeterEvents, "test", &buf, nil)
	if err == nil || !strings.Contains(err.Error(), "acme ("+idAcme+")") {
		t.Fatalf("stripe export with acme unmapped: got error %v, want one naming acme (%s)", err, idAcme)
	}
	if buf.Len() != 0 {
		t.Errorf("refused stripe export wrote %d bytes, want 0", buf.Len())
	}
	setCustomer(t, x, idAcme, "cus_Acme0001")
	customers[idAcme] = "cus_Acme0001"

	formats := []billing.Format{billing.FormatCloudEvents, billing.FormatStripeMeterEvents}
	check := func(period string, f billing.Format, b []byte) {
		t.Helper()
		start, err := time.Parse("2006-01", period)
		if err != nil {
			t.Fatal(err)
		}
		periodEnd := start.AddDate(0, 1, 0)
		ids := map[string]bool{}
		for i, m := range jsonLines(t, b) {
			var id string
			switch f {
			case billing.FormatCloudEvents:
				id, _ = m["id"].(string)
				data, _ := m["data"].(map[string]any)
				for k, want := range map[string]any{"specversion": "1.0", "type": billing.UsageEventType,
					"source": billing.UsageEventSource, "time": periodEnd.Format(time.RFC3339), "subject": data["tenant_id"]} {
					if m[k] != want {
						t.Errorf("%s %s line %d: got %s %v, want %v", period, f, i+1, k, m[k], want)
					}
				}
				if _, ok := data["value"].(float64); !ok || data["unit"] == "" || data["meter"] == "" {
					t.Errorf("%s %s line %d: got data %v, want value, unit and meter", period, f, i+1, data)
				}
			case billing.FormatStripeMeterEvents:
				id, _ = m["identifier"].(string)
				payload, _ := m["payload"].(map[string]any)
				value, ok := payload["value"].(string)
				if _, err := strconv.ParseInt(value, 10, 64); !ok || err != nil {
					t.Errorf("%s %s line %d: got payload.value %#v, want a whole number as a string", period, f, i+1, payload["value"])
				}
				if c, _ := payload["stripe_customer_id"].(string); !strings.HasPrefix(c, "cus_") {
					t.Errorf("%s %s line %d: got stripe_customer_id %q, want a customer of the tenant", period, f, i+1, c)
				}
				if ts, _ := m["timestamp"].(float64); int64(ts) != periodEnd.Add(-time.Second).Unix() {
					t.Errorf("%s %s line %d: got timestamp %v, want %d (the period's last second)", period, f, i+1, m["timestamp"], periodEnd.Add(-time.Second).Unix())
				}
				if name, _ := m["event_name"].(string); name == "" || name != strings.ToLower(name) || strings.Contains(name, " ") {
					t.Errorf("%s %s line %d: got event_name %q", period, f, i+1, name)
				}
			}
			if id == "" || ids[id] {
				t.Errorf("%s %s line %d: got id %q, want a unique one", period, f, i+1, id)
			}
			ids[id] = true
		}
		if len(ids) == 0 {
			t.Errorf("%s %s: got no events", period, f)
		}
	}
	for _, f := range formats {
		_, b1 := issue(t, e, "2026-09", f)
		checkGolden(t, "export-2026-09."+string(f)+".jsonl", b1)
		_, b2 := issue(t, e, "2026-09", f)
		if !bytes.Equal(b1, b2) {
			t.Errorf("2026-09 %s twice: got different bytes, want identical", f)
		}
		check("2026-09", f, b1)
	}
	addLateCounts(t, x)
	for _, f := range formats {
		_, b := issue(t, e, "2026-10", f)
		checkGolden(t, "export-2026-10."+string(f)+".jsonl", b)
		check("2026-10", f, b)
	}
	// The same line gives the same id in both feeds and in every export.
	ce := jsonLines(t, mustIssue(t, e, "2026-09", billing.FormatCloudEvents))
	st := jsonLines(t, mustIssue(t, e, "2026-09", billing.FormatStripeMeterEvents))
	if len(ce) != len(st) {
		t.Fatalf("2026-09: got %d cloudevents and %d stripe events, want as many", len(ce), len(st))
	}
	for i := range ce {
		if ce[i]["id"] != st[i]["identifier"] {
			t.Errorf("line %d: got cloudevents id %v and stripe identifier %v, want the same", i+1, ce[i]["id"], st[i]["identifier"])
		}
	}
}

func mustIssue(t *testing.T, e *billing.Exporter, period string, f billing.Format) []byte {
	t.Helper()
	_, b := issue(t, e, period, f)
	return b
}

// TestFeedEventID pins the id of a line: deterministic, and different for
// each part of the key and for a provisional preview.
func TestFeedEventID(t *testing.T) {
	base := billing.Line{TenantID: idAcme, Meter: "api_requests", UsagePeriod: "2026-09", Period: "2026-09", Status: "final"}
	id := billing.FeedEventID(&base)
	if again := billing.FeedEventID(&base); again != id {
		t.Fatalf("got %s then %s, want the same id", id, again)
	}
	for name, change := range map[string]func(l *billing.Line){
		"tenant":       func(l *billing.Line) { l.TenantID = idBeta },
		"meter":        func(l *billing.Line) { l.Meter = "orders_created" },
		"currency":     func(l *billing.Line) { l.MeterCurrency = "EUR" },
		"usage period": func(l *billing.Line) { l.UsagePeriod = "2026-08" },
		"period":       func(l *billing.Line) { l.Period = "2026-10" },
		"provisional":  func(l *billing.Line) { l.Status = "provisional" },
	} {
		t.Run(name, func(t *testing.T) {
			l := base
			change(&l)
			if got := billing.FeedEventID(&l); got == id {
				t.Errorf("got the same id %s, want another", got)
			}
		})
	}
}
