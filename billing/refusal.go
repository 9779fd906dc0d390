package billing

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tenantd/tenantd/internal/fault"
)

// The refusals of Limits. Each is matched with errors.Is; the typed errors
// (*RateLimitError, *QuotaError) carry the details, and all of them carry
// the fault that internal/httpx answers.
var (
	// ErrRateLimited refuses a request over its tenant's rate limit
	// (429 rate_limited); see *RateLimitError.
	ErrRateLimited = errors.New("billing: rate limit exceeded")
	// ErrQuotaExceeded refuses a request once a hard-limited meter of the
	// tenant's plan is used up for the period (429 quota_exceeded); see
	// *QuotaError.
	ErrQuotaExceeded = errors.New("billing: quota exceeded")
	// ErrRateLimitUnavailable refuses a request whose rate limit Redis
	// could not decide while rate limits fail closed (503
	// service_unavailable, Retry-After 1).
	ErrRateLimitUnavailable = fault.New(fault.Unavailable, "rate limiting is unavailable; retry shortly")
)

// RateLimitError is a refusal by the rate limit: the plan's rate and burst,
// and how long the client should wait (whole seconds, at least one).
type RateLimitError struct {
	Rate, Burst int
	RetryAfter  time.Duration
}

func (e *RateLimitError) fault() *fault.Error {
	return fault.Later(fault.RateLimited, fmt.Sprintf("rate limit of %d requests per second (bursts of %d) exceeded; retry after %d s",
		e.Rate, e.Burst, ceilSeconds(e.RetryAfter)), e.RetryAfter)
}

// Error returns the refusal as the client reads it, with its code.
func (e *RateLimitError) Error() string { return e.fault().Error() }

// Unwrap makes the error ErrRateLimited and its fault.
func (e *RateLimitError) Unwrap() []error { return []error{ErrRateLimited, e.fault()} }

// QuotaError is a refusal by a quota: which meter of which period is used
// up, its limit, the usage and when the period ends; the client should wait
// RetryAfter (whole seconds, at least one).
type QuotaError struct {
	Meter, Period string
	Limit, Used   int64
	ResetsAt      time.Time
	RetryAfter    time.Duration
}

func (e *QuotaError) fault() *fault.Error {
	return fault.Later(fault.QuotaExceeded, fmt.Sprintf("the %s quota of %d for %s is used up; it resets at %s",
		e.Meter, e.Limit, e.Period, e.ResetsAt.Format(time.RFC3339)), e.RetryAfter)
}

// Error returns the refusal as the client reads it, with its code.
func (e *QuotaError) Error() string { return e.fault().Error() }

// Unwrap makes the error ErrQuotaExceeded and its fault.
func (e *QuotaError) Unwrap() []error { return []error{ErrQuotaExceeded, e.fault()} }

// quotaMembers are the members a quota refusal adds to its problem
// document, after the standard ones.
type quotaMembers struct {
	Meter    string    `json:"meter"`
	Limit    int64     `json:"limit"`
	Used     int64     `json:"used"`
	ResetsAt time.Time `json:"resets_at"`
}

// ProblemMembers returns the members the 429 quota_exceeded document
// carries besides the standard ones: the meter, its limit, the usage and
// when it resets.
func (e *QuotaError) ProblemMembers() any {
	return quotaMembers{Meter: e.Meter, Limit: e.Limit, Used: e.Used, ResetsAt: e.ResetsAt}
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}
