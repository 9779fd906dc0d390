package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/middleware"
)

// TestAccessLogClientClosed sends requests through a real HTTP server to a
// gin engine with the metrics and AccessLog middleware. A client that hangs
// up while its request is being served is logged as status 499, outcome
// "client closed request", at level WARN, and counted as 499, whether the
// handler answered the cancellation with httpx.Error or wrote nothing;
// answered requests and real server errors are logged as before.
func TestAccessLogClientClosed(t *testing.T) {
	gin.SetMode(gin.TestMode)
	tests := []struct {
		name        string
		handler     func(started chan<- struct{}) gin.HandlerFunc
		hangUp      bool
		wantStatus  int
		wantLevel   string
		wantOutcome string
	}{
		{
			name: "handler answers the cancellation",
			handler: func(started chan<- struct{}) gin.HandlerFunc {
				return func(c *gin.Context) {
					close(started)
					ctx := c.Request.Context()
					<-ctx.Done() // a query cut short by the client going away
					httpx.Error(c, fmt.Errorf("list products: %w", ctx.Err()))
				}
			},
			hangUp: true, wantStatus: httpx.StatusClientClosedRequest, wantLevel: "WARN", wantOutcome: "client closed request",
		},
		{
			name: "handler writes nothing",
			handler: func(started chan<- struct{}) gin.HandlerFunc {
				return func(c *gin.Context) {
					close(started)
					<-c.Request.Context().Done()
				}
			},
			hangUp: true, wantStatus: httpx.StatusClientClosedRequest, wantLevel: "WARN", wantOutcome: "client closed request",
		},
		{
			name: "answered",
			handler: func(started chan<- struct{}) gin.HandlerFunc {
				return func(c *gin.Context) { close(started); c.Status(http.StatusNoContent) }
			},
			wantStatus: http.StatusNoContent, wantLevel: "INFO",
		},
		{
			name: "server error",
			handler: func(started chan<- struct{}) gin.HandlerFunc {
				return func(c *gin.Context) { close(started); httpx.Error(c, errors.New("boom")) }
			},
			wantStatus: http.StatusInternalServerError, wantLevel: "ERROR",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs apptest.SyncBuffer
			log := slog.New(slog.NewJSONHandler(&logs, nil))
			m := obs.NewMetrics()
			started, logged := make(chan struct{}), make(chan struct{})
			e := gin.New()
			e.Use(func(c *gin.Context) { c.Next(); close(logged) }, middleware.Metrics(m), middleware.AccessLog(log))
			e.GET("/v1/products", tt.handler(started))
			srv := httptest.NewServer(e)
			defer srv.Close()

			ctx, hangUp := context.WithCancel(t.Context())
			defer hangUp()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/products", nil)
			if err != nil {
				t.Fatal(err)
			}
			answered := make(chan error, 1)
			go func() {
				resp, err := srv.Client().Do(req)
				if err == nil {
					resp.Body.Close()
				}
				answered <- err
			}()
			<-started
			if tt.hangUp {
				hangUp()
			}
			select {
			case <-logged:
			case <-time.After(10 * time.Second):
				t.Fatal("the request was not logged within 10s")
			}
			if err := <-answered; tt.hangUp != (err != nil) {
				t.Fatalf("client got error %v; want one only when it hung up", err)
			}

			var line struct {
				Level, Msg, Outcome string
				Status              int
			}
			if err := json.Unmarshal([]byte(logs.String()), &line); err != nil {
				t.Fatalf("decode access log %q: %v", logs.String(), err)
			}
			if line.Msg != "request" || line.Status != tt.wantStatus || line.Level != tt.wantLevel || line.Outcome != tt.wantOutcome {
				t.Errorf("got log %s, want status %d, level %s, outcome %q", logs.String(), tt.wantStatus, tt.wantLevel, tt.wantOutcome)
			}
			if got := requestsCounted(t, m, fmt.Sprint(tt.wantStatus)); got != 1 {
				t.Errorf("got %v requests counted with status %d, want 1", got, tt.wantStatus)
			}
		})
	}
}

// requestsCounted reads tenantd_http_requests_total{status} from m.
func requestsCounted(t *testing.T, m *obs.Metrics, status string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "tenantd_http_requests_total" {
			continue
		}
		for _, c := range mf.GetMetric() {
			for _, l := range c.GetLabel() {
				if l.GetName() == "status" && l.GetValue() == status {
					n += c.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
