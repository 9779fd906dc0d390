package httpx_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// refusal is an error whose problem document carries members of its own,
// as billing's quota refusal does.
type refusal struct{ meter string }

func (r refusal) Error() string { return "refused" }
func (r refusal) Unwrap() error {
	return fault.Later(fault.QuotaExceeded, "the quota is used up", 90*time.Second)
}
func (r refusal) ProblemMembers() any {
	return struct {
		Meter string `json:"meter"`
		Limit int    `json:"limit"`
	}{r.meter, 5}
}

// TestHandle: a handler's returned error is answered through the one
// table, members of its own after the standard ones and Retry-After from
// the fault; a nil error leaves the handler's answer alone.
func TestHandle(t *testing.T) {
	gin.SetMode(gin.TestMode)
	tests := []struct {
		name       string
		h          httpx.HandlerFunc
		wantStatus int
		wantBody   string
		wantRetry  string
	}{
		{"answered", func(c *gin.Context) error { c.Status(http.StatusNoContent); return nil }, http.StatusNoContent, "", ""},
		{"fault", func(*gin.Context) error { return fmt.Errorf("get: %w", fault.New(fault.NotFound, "no such thing")) },
			http.StatusNotFound,
			`{"type":"https://tenantd.dev/problems/not_found","title":"Not Found","status":404,"detail":"no such thing","code":"not_found","instance":"/things"}`, ""},
		{"members", func(*gin.Context) error { return fmt.Errorf("admit: %w", refusal{"api_requests"}) },
			http.StatusTooManyRequests,
			`{"type":"https://tenantd.dev/problems/quota_exceeded","title":"Too Many Requests","status":429,"detail":"the quota is used up","code":"quota_exceeded","instance":"/things","meter":"api_requests","limit":5}`,
			"90"},
		{"unclassified", func(*gin.Context) error { return errors.New("boom") }, http.StatusInternalServerError,
			`{"type":"https://tenantd.dev/problems/internal","title":"Internal Server Error","status":500,"detail":"an internal error occurred; quote the request id when reporting it","code":"internal","instance":"/things"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := gin.New()
			e.GET("/things", httpx.Handle(tt.h))
			w := httptest.NewRecorder()
			e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/things", nil))
			if w.Code != tt.wantStatus || w.Body.String() != tt.wantBody || w.Header().Get("Retry-After") != tt.wantRetry {
				t.Errorf("got %d %s (Retry-After %q), want %d %s (Retry-After %q)",
					w.Code, w.Body, w.Header().Get("Retry-After"), tt.wantStatus, tt.wantBody, tt.wantRetry)
			}
		})
	}
}
