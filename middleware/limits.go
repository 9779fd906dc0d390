package middleware

import (
	"context"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// Rate limit response headers (IETF RateLimit header fields), stored in
// their canonical form.
var (
	headerLimit     = http.CanonicalHeaderKey("RateLimit-Limit")
	headerRemaining = http.CanonicalHeaderKey("RateLimit-Remaining")
	headerReset     = http.CanonicalHeaderKey("RateLimit-Reset")
)

// RateLimitState is what the RateLimit response headers say after a rate
// limit decision.
type RateLimitState struct {
	// Limit is the plan's burst (RateLimit-Limit).
	Limit int
	// Remaining is how many requests may still be sent at once
	// (RateLimit-Remaining).
	Remaining int
	// Reset is the whole seconds until the bucket is full again
	// (RateLimit-Reset).
	Reset int
}

// RateLimiter decides whether a tenant on a plan may spend one more
// request now (billing.Limits, through an adapter). known is false when it
// knows no limits for the plan; err, when set, refuses the request and is
// answered through httpx.
type RateLimiter interface {
	AllowRequest(ctx context.Context, tenantID uuid.UUID, plan string) (state RateLimitState, known bool, err error)
}

// QuotaChecker counts a tenant's request against the hard limits of its
// plan, or refuses it once one is used up (billing.Limits is one).
type QuotaChecker interface {
	AdmitRequest(ctx context.Context, tenantID uuid.UUID, plan, method, route string) error
}

// RequestCounter counts a tenant's authenticated requests for billing
// (billing.Counter is one).
type RequestCounter interface {
	CountRequest(ctx context.Context, tenantID uuid.UUID)
}

// RejectionCounter counts requests that a rate limit or quota refused, by
// reason (the fault code) and plan (obs.Metrics is one).
type RejectionCounter interface {
	CountRejected(reason, plan string)
}

// rejectedKey marks, in the gin context, a request RateLimit or Quota
// refused: Metering does not count it.
const rejectedKey = "middleware.rejected"

// tenantPrincipal returns the request's principal when it acts in a
// tenant (httpx.TenantPrincipal).
func tenantPrincipal(c *gin.Context) (identity.Principal, bool) {
	p, err := httpx.TenantPrincipal(c)
	return p, err == nil
}

// forTenants is the step that runs step on the requests of a tenant
// principal (tenantPrincipal) and passes the others on untouched.
func forTenants(step func(c *gin.Context, p identity.Principal)) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, ok := tenantPrincipal(c)
		if !ok {
			c.Next()
			return
		}
		step(c, p)
	}
}

// Metering counts every request of a tenant principal that passes through
// it, whatever its status (a panic included), except the requests that
// RateLimit or Quota refused. Put it after authentication and before
// RateLimit and Quota.
func Metering(counter RequestCounter) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if c.GetBool(rejectedKey) {
				return
			}
			if p, ok := tenantPrincipal(c); ok {
				counter.CountRequest(c.Request.Context(), p.TenantID)
			}
		}()
		c.Next()
	}
}

// RateLimit limits each tenant's requests to its plan's rate and burst,
// sets RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset on every
// response it sees, and refuses excess requests with the limiter's error
// (429 rate_limited with Retry-After, or 503 with Retry-After when the
// limiter cannot decide and fails closed). Put it after authentication.
func RateLimit(l RateLimiter) gin.HandlerFunc {
	return forTenants(func(c *gin.Context, p identity.Principal) {
		s, known, err := l.AllowRequest(c.Request.Context(), p.TenantID, p.Plan)
		if !known {
			c.Next()
			return
		}
		h := c.Writer.Header()
		h[headerLimit] = []string{strconv.Itoa(s.Limit)}
		h[headerRemaining] = []string{strconv.Itoa(s.Remaining)}
		h[headerReset] = []string{strconv.Itoa(s.Reset)}
		switch {
		case err == nil:
			c.Next()
		case fault.CodeOf(err) == fault.Unavailable:
			c.Set(rejectedKey, true)
			// Not httpx.Error: that logs every 5xx, and the limiter logs
			// its failures once in a while already.
			httpx.WriteProblem(c, httpx.ProblemFor(err))
		default:
			c.Set(rejectedKey, true)
			httpx.Error(c, err)
		}
	})
}

// Quota refuses a request with the checker's error (429 quota_exceeded,
// with Retry-After and the meter, limit, usage and reset time) once a
// hard-limited meter of the tenant's plan is used up. Put it after
// RateLimit.
func Quota(q QuotaChecker) gin.HandlerFunc {
	return forTenants(func(c *gin.Context, p identity.Principal) {
		if err := q.AdmitRequest(c.Request.Context(), p.TenantID, p.Plan, c.Request.Method, c.FullPath()); err != nil {
			c.Set(rejectedKey, true)
			httpx.Error(c, err)
			return
		}
		c.Next()
	})
}

// CountRejections counts the requests a rate limit or quota refused (429
// with an error recorded), by reason and plan. Put it before Metering.
func CountRejections(m RejectionCounter) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if c.Writer.Status() != http.StatusTooManyRequests || len(c.Errors) == 0 {
			return
		}
		p, _ := identity.FromContext(c.Request.Context())
		m.CountRejected(string(fault.CodeOf(c.Errors.Last().Err)), p.Plan)
	}
}
