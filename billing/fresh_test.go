package billing_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

// TestUsageFresh serves requests on one replica (a running Counter) and
// reads GET /v1/usage from another (a Reporter on PostgreSQL, with none of
// the first replica's memory): the current hour's api_requests show there
// within 5 seconds, twice in a row, not when the hour is over.
func TestUsageFresh(t *testing.T) {
	r := newMeterRig(t)
	id := testenv.NewTenant(t, testenv.WithPlan("pro")).ID
	counter := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
	runMeterCounter(t, counter)
	e := meterEngine(middleware.Metering(counter))
	srv := billingServer(t, r.app)
	asTenant := map[string]string{"X-Test-Tenant": id.String(), "X-Test-Permissions": "usage:read"}
	used := func() int64 {
		t.Helper()
		res := call(t, "GET", srv.URL+"/v1/usage", asTenant, "")
		var u billing.UsageResponse
		if err := json.Unmarshal(res.body, &u); err != nil || res.status != http.StatusOK {
			t.Fatalf("GET /v1/usage: got %d %s, want 200", res.status, res.body)
		}
		for _, m := range u.Meters {
			if m.Meter == billing.MeterAPIRequests {
				return m.Used
			}
		}
		t.Fatalf("got %s, want api_requests among the meters", res.body)
		return 0
	}

	var want int64
	for round, n := range []int64{40, 25} {
		for range n {
			if w := meterGet(e, id, "pro", "/v1/things/x"); w.Code != http.StatusOK {
				t.Fatalf("got status %d, want 200", w.Code)
			}
		}
		want += n
		var got int64
		took := testenv.Eventually(t, 5*time.Second, func() (bool, string) {
			got = used()
			return got >= want, fmt.Sprintf("round %d: got api_requests %d on /v1/usage, want %d", round+1, got, want)
		})
		if got != want {
			t.Fatalf("round %d: got api_requests %d on /v1/usage %s after the requests, want %d within 5s", round+1, got, took.Round(time.Millisecond), want)
		}
		t.Logf("round %d: /v1/usage showed all %d requests %s after the last one", round+1, want, took.Round(time.Millisecond))
	}
}
