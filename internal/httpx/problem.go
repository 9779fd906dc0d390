// Package httpx holds the HTTP plumbing shared by every module: problem+json
// errors mapped from fault codes in one table, strict JSON binding, cursor
// pagination and the permission-checked route table.
package httpx

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type     string             `json:"type"`
	Title    string             `json:"title"`
	Status   int                `json:"status"`
	Detail   string             `json:"detail,omitempty"`
	Code     fault.Code         `json:"code"`
	Instance string             `json:"instance,omitempty"`
	Errors   []fault.FieldError `json:"errors,omitempty"`
	Extra    map[string]any     `json:"-"`
}

// statusOf is the one table that maps error codes to HTTP statuses.
var statusOf = map[fault.Code]int{
	fault.Validation:                  http.StatusUnprocessableEntity,
	fault.Unauthenticated:             http.StatusUnauthorized,
	fault.Forbidden:                   http.StatusForbidden,
	fault.TenantMismatch:              http.StatusForbidden,
	fault.TenantSuspended:             http.StatusForbidden,
	fault.NotFound:                    http.StatusNotFound,
	fault.Conflict:                    http.StatusConflict,
	fault.InsufficientStock:           http.StatusConflict,
	fault.AmountMismatch:              http.StatusUnprocessableEntity,
	fault.OrderNotPayable:             http.StatusConflict,
	fault.IdempotencyKeyReused:        http.StatusUnprocessableEntity,
	fault.RateLimited:                 http.StatusTooManyRequests,
	fault.QuotaExceeded:               http.StatusTooManyRequests,
	fault.GatewayUnavailable:          http.StatusServiceUnavailable,
	fault.PreconditionFailed:          http.StatusPreconditionFailed,
	fault.PayloadTooLarge:             http.StatusRequestEntityTooLarge,
	fault.Unavailable:                 http.StatusServiceUnavailable,
	fault.IdentityProviderUnavailable: http.StatusServiceUnavailable,
	fault.Internal:                    http.StatusInternalServerError,
}

// StatusOf returns the HTTP status for an error code.
func StatusOf(code fault.Code) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ProblemFor builds the problem document for err. Errors without a fault code
// become a generic 500 that reveals nothing about the cause.
func ProblemFor(err error) Problem {
	fe, ok := fault.As(err)
	if !ok {
		fe = fault.New(fault.Internal, "an internal error occurred; quote the request id when reporting it")
	}
	status := StatusOf(fe.Code)
	return Problem{
		Type:   "https://tenantd.dev/problems/" + string(fe.Code),
		Title:  http.StatusText(status),
		Status: status,
		Detail: fe.Message,
		Code:   fe.Code,
		Errors: fe.Fields,
	}
}

// Error writes err as problem+json and aborts the chain. Internal errors are
// logged with their cause; the client sees only the request id.
func Error(c *gin.Context, err error) {
	p := ProblemFor(err)
	if p.Status >= 500 && !errors.Is(err, errClientGone) {
		slog.ErrorContext(c.Request.Context(), "request failed", "err", err, "status", p.Status, "path", c.FullPath())
	}
	c.Error(err) //nolint:errcheck // recorded for the access log; the return is the same error
	WriteProblem(c, p)
}

// WriteProblem writes a problem document and aborts the chain.
func WriteProblem(c *gin.Context, p Problem) {
	p.Instance = c.Request.URL.Path
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(p.Status, p)
}

// Fail writes a problem for a code and message.
func Fail(c *gin.Context, code fault.Code, message string) {
	Error(c, fault.New(code, message))
}

var errClientGone = errors.New("client went away")
