package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestReadinessWithRedisDown stops a real Redis: /readyz stays 200, saying
// "degraded", while rate limits fail open (requests are served without
// Redis), and turns 503 when they fail closed (every rate-limited request
// would be refused); tenantd_dependency_up says redis 0, postgres 1 either
// way. With Redis back the replica is ready again; draining is 503 always.
func TestReadinessWithRedisDown(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	tests := []struct {
		name       string
		failOpen   bool
		wantStatus int
		wantState  string
	}{
		{"RATE_LIMIT_FAIL=open", true, http.StatusOK, "degraded"},
		{"RATE_LIMIT_FAIL=closed", false, http.StatusServiceUnavailable, "not ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			server := testenv.PrivateRedis(t)
			opts, err := redis.ParseURL(server.URL)
			if err != nil {
				t.Fatal(err)
			}
			// The client options of tenantd serve.
			opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 2*time.Second, time.Second, time.Second
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { rdb.Close() })
			m := obs.NewMetrics()
			h := newHealth(log, env.OpenDB(t, 4), rdb, tt.failOpen, m)
			gin.SetMode(gin.TestMode)
			e := gin.New()
			e.GET("/readyz", h.ready)

			wantReady(t, e, http.StatusOK, "ready", "ok")
			wantUp(t, m, map[string]float64{"postgres": 1, "redis": 1})

			server.Stop()
			wantReady(t, e, tt.wantStatus, tt.wantState, "failing")
			wantUp(t, m, map[string]float64{"postgres": 1, "redis": 0})

			if err := server.Start(context.Background()); err != nil {
				t.Fatalf("restart redis: %v", err)
			}
			wantReady(t, e, http.StatusOK, "ready", "ok")
			wantUp(t, m, map[string]float64{"postgres": 1, "redis": 1})

			h.draining.Store(true)
			got := wantReady(t, e, http.StatusServiceUnavailable, "not ready", "ok")
			if got["shutdown"] != "draining" {
				t.Errorf("while draining: got checks %v, want shutdown: draining", got)
			}
		})
	}
}

// wantReady fails t unless /readyz answers status with the overall state
// and redis's check outcome, PostgreSQL and the schema being ok; it returns
// the checks.
func wantReady(t *testing.T, e *gin.Engine, status int, state, redisCheck string) map[string]string {
	t.Helper()
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("decode %q: %v", w.Body, err)
	}
	if w.Code != status || body.Status != state || body.Checks["redis"] != redisCheck ||
		body.Checks["postgres"] != "ok" || body.Checks["migrations"] != "ok" {
		t.Errorf("got %d %s, want %d with status %q, redis %q, postgres and migrations ok", w.Code, w.Body, status, state, redisCheck)
	}
	return body.Checks
}

// wantUp fails t unless tenantd_dependency_up reads want.
func wantUp(t *testing.T, m *obs.Metrics, want map[string]float64) {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "tenantd_dependency_up" {
			continue
		}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "dependency" {
					got[l.GetValue()] = metric.GetGauge().GetValue()
				}
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("got tenantd_dependency_up %v, want %v", got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("got tenantd_dependency_up %v, want %v", got, want)
			return
		}
	}
}
