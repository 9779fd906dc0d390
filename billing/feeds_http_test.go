package billing_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/billing"
)

// TestFeedsHTTP covers the feed formats of POST /admin/v1/billing/exports
// and their download: a Stripe feed is refused (422 naming the tenant)
// while a tenant with usage has no billing_customer_id; once every tenant
// has one, both feeds are issued and downloaded as JSON Lines with the
// golden bytes.
func TestFeedsHTTP(t *testing.T) {
	t.Parallel()
	x := newGoldenDB(t)
	srv := billingServer(t, x.app)
	asOperator := map[string]string{"X-Test-Operator": "yes", "Content-Type": "application/json"}
	post := func(body string) httpResult {
		return call(t, "POST", srv.URL+"/admin/v1/billing/exports", asOperator, body)
	}

	r := post(`{"period":"2026-09","format":"stripe-meter-events"}`)
	wantProblem(t, r, http.StatusUnprocessableEntity, "validation_failed")
	if !strings.Contains(string(r.body), "billing_customer_id") || !strings.Contains(string(r.body), "acme ("+idAcme+")") {
		t.Errorf("got %s, want the field billing_customer_id naming acme", r.body)
	}
	wantProblem(t, post(`{"period":"2026-09","format":"parquet"}`), http.StatusUnprocessableEntity, "validation_failed")

	for id, c := range map[string]string{idAcme: "cus_Acme0001", idBeta: "cus_Beta0002", idZeta: "cus_Zeta0003",
		idAbb: "cus_Abb00004", idAbC: "cus_AbC00005", idSuspended: "cus_Susp0006", idLate: "cus_Late0007", idFuture: "cus_Futr0008"} {
		setCustomer(t, x, id, c)
	}
	for _, f := range []billing.Format{billing.FormatCloudEvents, billing.FormatStripeMeterEvents} {
		t.Run(string(f), func(t *testing.T) {
			r := post(`{"period":"2026-09","format":"` + string(f) + `"}`)
			if r.status != http.StatusCreated {
				t.Fatalf("got %d %s, want 201", r.status, r.body)
			}
			var x1 billing.ExportResponse
			if err := json.Unmarshal(r.body, &x1); err != nil {
				t.Fatal(err)
			}
			if x1.Format != f || x1.Rows == 0 {
				t.Errorf("got %s, want format %s and rows", r.body, f)
			}
			d := call(t, "GET", srv.URL+"/admin/v1/billing/exports/"+x1.ID.String()+"/download", asOperator, "")
			if d.status != http.StatusOK {
				t.Fatalf("download: got %d %s, want 200", d.status, d.body)
			}
			checkGolden(t, "export-2026-09."+string(f)+".jsonl", d.body)
			if got := int64(strings.Count(string(d.body), "\n")); got != x1.Rows {
				t.Errorf("download: got %d lines, want rows %d", got, x1.Rows)
			}
			for k, v := range map[string]string{
				"Content-Type":        "application/x-ndjson",
				"Content-Disposition": `attachment; filename="tenantd-billing-2026-09.` + string(f) + `.jsonl"`,
			} {
				if got := d.header.Get(k); got != v {
					t.Errorf("download: got %s %q, want %q", k, got, v)
				}
			}
		})
	}
}
