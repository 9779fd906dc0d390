package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestMetrics: /metrics exposes the request, pool, outbox and saga metrics,
// labelled by route template, never by tenant or raw path.
func TestMetrics(t *testing.T) {
	s, sh := apptest.NewWithShop(t, 5, 100)
	id := sh.Place(t, 1)
	sh.Pay(t, id, 100, "card", nil)
	sh.WaitStatus(t, id, "completed")
	sh.Get(t, "/v1/products/"+sh.Product)

	testenv.Eventually(t, 2*time.Second, func() (bool, string) {
		return strings.Contains(string(s.Do(apptest.Request{Method: "GET", Path: "/metrics"}).Body), `tenantd_saga_outcomes_total{outcome="completed"}`), "saga metric"
	})
	resp := s.Do(apptest.Request{Method: "GET", Path: "/metrics"})
	body := string(resp.Body)
	for _, want := range []string{
		`tenantd_http_requests_total{method="GET",route="/v1/products/:id",status="200"}`,
		`tenantd_http_request_duration_seconds_bucket{method="POST",route="/v1/orders"`,
		"tenantd_http_requests_in_flight",
		"tenantd_db_open_connections",
		`tenantd_outbox_lag_seconds{subscriber="orders-saga"}`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, leak := range []string{sh.Tenant.ID, sh.Product, id} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics carries an unbounded label value %s", leak)
		}
	}
}
