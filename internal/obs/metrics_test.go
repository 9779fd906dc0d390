package obs_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantd/tenantd/internal/obs"
)

// failing is a collector whose gathering fails, as the outbox lag's does
// when its query times out.
type failing struct{ desc *prometheus.Desc }

func (f failing) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }
func (f failing) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.desc, errors.New("query timed out"))
}

// TestScrapeSurvivesAFailingCollector: one failing collector leaves its
// metric out of the scrape, counted, instead of answering 500.
func TestScrapeSurvivesAFailingCollector(t *testing.T) {
	gin.SetMode(gin.TestMode)
	m := obs.NewMetrics()
	m.Registry.MustRegister(failing{prometheus.NewDesc("test_failing", "fails", nil, nil)})
	e := gin.New()
	e.GET("/metrics", m.Handler())
	for range 2 { // the error counter shows from the second scrape on
		w := httptest.NewRecorder()
		e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if w.Code != http.StatusOK {
			t.Fatalf("got %d, want 200", w.Code)
		}
		if !strings.Contains(w.Body.String(), "go_goroutines") {
			t.Fatal("the other collectors' metrics are missing")
		}
		if strings.Contains(w.Body.String(), "test_failing ") {
			t.Fatal("the failing collector's metric is in the scrape")
		}
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(w.Body.String(), `promhttp_metric_handler_errors_total{cause="gathering"} 2`) {
		t.Errorf("want the gathering errors counted; got:\n%s", grep(w.Body.String(), "promhttp_metric_handler_errors_total"))
	}
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
