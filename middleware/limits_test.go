package middleware_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/middleware"
)

// limiter answers every rate limit decision with state and err.
type limiter struct {
	known bool
	err   error
}

func (l limiter) AllowRequest(context.Context, uuid.UUID, string) (middleware.RateLimitState, bool, error) {
	return middleware.RateLimitState{Limit: 5, Remaining: 0, Reset: 3}, l.known, l.err
}

// quota refuses every request with err.
type quota struct{ err error }

func (q quota) AdmitRequest(context.Context, uuid.UUID, string, string, string) error { return q.err }

// counts records requests counted and rejections by reason.
type counts struct {
	requests int
	rejected map[string]int
}

func (c *counts) CountRequest(context.Context, uuid.UUID) { c.requests++ }
func (c *counts) CountRejected(reason, _ string)          { c.rejected[reason]++ }

// TestLimitRefusals: a refusal by the rate limit or a quota is answered
// through httpx (status, Retry-After), is not metered, and is counted as a
// rejection when it is a 429; an allowed request carries the RateLimit
// headers and is metered.
func TestLimitRefusals(t *testing.T) {
	gin.SetMode(gin.TestMode)
	tests := []struct {
		name         string
		rate         limiter
		quota        error
		wantStatus   int
		wantRetry    string
		wantLimit    string
		wantMetered  int
		wantRejected string
	}{
		{"no limits known", limiter{}, nil, http.StatusOK, "", "", 1, ""},
		{"allowed", limiter{known: true}, nil, http.StatusOK, "", "5", 1, ""},
		{"rate limited", limiter{known: true, err: fault.Later(fault.RateLimited, "slow down", 2*time.Second)}, nil,
			http.StatusTooManyRequests, "2", "5", 0, string(fault.RateLimited)},
		{"rate limiting unavailable", limiter{known: true, err: fault.New(fault.Unavailable, "no redis")}, nil,
			http.StatusServiceUnavailable, "1", "5", 0, ""},
		{"quota exceeded", limiter{known: true}, fault.Later(fault.QuotaExceeded, "used up", 90*time.Second),
			http.StatusTooManyRequests, "90", "5", 0, string(fault.QuotaExceeded)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &counts{rejected: map[string]int{}}
			var recorded int
			e := gin.New()
			e.Use(func(c *gin.Context) {
				p := identity.Principal{Kind: identity.KindAPIKey, TenantID: uuid.New(), Plan: "basic"}
				c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
				c.Next()
				recorded = len(c.Errors)
			}, middleware.CountRejections(n), middleware.Metering(n), middleware.RateLimit(tt.rate), middleware.Quota(quota{tt.quota}))
			e.GET("/v1/things", func(c *gin.Context) { c.Status(http.StatusOK) })
			w := httptest.NewRecorder()
			e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/things", nil))
			if w.Code != tt.wantStatus || w.Header().Get("Retry-After") != tt.wantRetry || w.Header().Get("RateLimit-Limit") != tt.wantLimit {
				t.Errorf("got %d, Retry-After %q, RateLimit-Limit %q, want %d, %q, %q", w.Code, w.Header().Get("Retry-After"),
					w.Header().Get("RateLimit-Limit"), tt.wantStatus, tt.wantRetry, tt.wantLimit)
			}
			if n.requests != tt.wantMetered {
				t.Errorf("got %d requests metered, want %d", n.requests, tt.wantMetered)
			}
			if tt.wantRejected != "" && n.rejected[tt.wantRejected] != 1 || tt.wantRejected == "" && len(n.rejected) != 0 {
				t.Errorf("got rejections %v, want one %q", n.rejected, tt.wantRejected)
			}
			// The fail-closed 503 is logged by the limiter, not as a failed
			// request.
			if wantErr := tt.wantStatus == http.StatusTooManyRequests; (recorded > 0) != wantErr {
				t.Errorf("got %d errors recorded for the access log, want some: %t", recorded, wantErr)
			}
		})
	}
}

// TestLimitsPassRequestsWithoutTenant: the rate limit and quotas apply to
// tenant principals only; a request without one, or an operator's, passes
// a limiter and a quota that would refuse it, without RateLimit headers.
func TestLimitsPassRequestsWithoutTenant(t *testing.T) {
	gin.SetMode(gin.TestMode)
	refusing := limiter{known: true, err: fault.Later(fault.RateLimited, "slow down", 2*time.Second)}
	used := quota{fault.Later(fault.QuotaExceeded, "used up", 90*time.Second)}
	for name, principal := range map[string]*identity.Principal{
		"no principal": nil,
		"operator":     {Kind: identity.KindOperator, Subject: "operator"},
	} {
		t.Run(name, func(t *testing.T) {
			for step, mw := range map[string]gin.HandlerFunc{"rate limit": middleware.RateLimit(refusing), "quota": middleware.Quota(used)} {
				e := gin.New()
				e.Use(func(c *gin.Context) {
					if principal != nil {
						c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), *principal))
					}
				}, mw)
				e.GET("/v1/things", func(c *gin.Context) { c.Status(http.StatusOK) })
				w := httptest.NewRecorder()
				e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/things", nil))
				if w.Code != http.StatusOK || w.Header().Get("RateLimit-Limit") != "" {
					t.Errorf("%s: got %d, RateLimit-Limit %q, want 200 without", step, w.Code, w.Header().Get("RateLimit-Limit"))
				}
			}
		})
	}
}
