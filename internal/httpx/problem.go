// Package httpx holds the HTTP plumbing shared by every module: problem+json
// errors mapped from fault codes in one table, strict JSON binding, cursor
// pagination and the permission-checked route table.
package httpx

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgconn"

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
	// Extra, when set, is a value (a struct) whose JSON members the
	// document carries after the standard ones: ProblemFor takes it from
	// an error with a ProblemMembers method (a quota refusal's meter and
	// limit).
	Extra any `json:"-"`
	// RetryAfter, when positive, is sent as the Retry-After header (whole
	// seconds, rounded up) unless the handler set one already.
	RetryAfter time.Duration `json:"-"`
}

// StatusClientClosedRequest is the status (nginx's 499) logged and counted
// for a request whose client hung up before it was answered.
const StatusClientClosedRequest = 499

// CodeClientClosed is the code of a request whose client hung up before it
// was answered. It is no code of the API contract (internal/fault): no
// client ever reads it, but logs and metrics tell it from a server error.
const CodeClientClosed fault.Code = "client_closed_request"

// answer is how an error code is answered over HTTP.
type answer struct {
	status     int
	retryAfter time.Duration
}

// answers is the one table that maps error codes to HTTP statuses (and,
// for answers that invite a retry, to a Retry-After).
var answers = map[fault.Code]answer{
	fault.Validation:                  {status: http.StatusUnprocessableEntity},
	fault.Unauthenticated:             {status: http.StatusUnauthorized},
	fault.Forbidden:                   {status: http.StatusForbidden},
	fault.TenantMismatch:              {status: http.StatusForbidden},
	fault.TenantSuspended:             {status: http.StatusForbidden},
	fault.NotFound:                    {status: http.StatusNotFound},
	fault.Conflict:                    {status: http.StatusConflict},
	fault.InsufficientStock:           {status: http.StatusConflict},
	fault.AmountMismatch:              {status: http.StatusUnprocessableEntity},
	fault.OrderNotPayable:             {status: http.StatusConflict},
	fault.IdempotencyKeyReused:        {status: http.StatusUnprocessableEntity},
	fault.RateLimited:                 {status: http.StatusTooManyRequests},
	fault.QuotaExceeded:               {status: http.StatusTooManyRequests},
	fault.GatewayUnavailable:          {status: http.StatusServiceUnavailable},
	fault.PreconditionFailed:          {status: http.StatusPreconditionFailed},
	fault.PayloadTooLarge:             {status: http.StatusRequestEntityTooLarge},
	fault.LastAdmin:                   {status: http.StatusConflict},
	fault.Unavailable:                 {status: http.StatusServiceUnavailable, retryAfter: time.Second},
	fault.IdentityProviderUnavailable: {status: http.StatusServiceUnavailable},
	CodeClientClosed:                  {status: StatusClientClosedRequest},
	fault.Internal:                    {status: http.StatusInternalServerError},
}

// unavailableStates are the PostgreSQL errors (by SQLSTATE) that mean the
// database could not serve the request in time, with what the client is
// told. Each answers service_unavailable: the same request may succeed
// when retried.
var unavailableStates = map[string]string{
	"55P03": "the request waited too long for data another request holds; retry shortly", // lock_not_available: lock_timeout
	"57014": "the request took too long in the database; retry shortly",                  // query_canceled: statement_timeout
	"25P03": "the request's transaction stood idle too long; retry shortly",              // idle_in_transaction_session_timeout
	"40P01": "the request kept conflicting with concurrent requests; retry shortly",      // deadlock_detected, still failing after db.WithTenant's retries
	"40001": "the request kept conflicting with concurrent requests; retry shortly",      // serialization_failure, likewise
	"53300": "the database has no connection free; retry shortly",                        // too_many_connections
	"57P03": "the database is not accepting connections at the moment; retry shortly",    // cannot_connect_now
}

// StatusOf returns the HTTP status for an error code.
func StatusOf(code fault.Code) int {
	if a, ok := answers[code]; ok {
		return a.status
	}
	return http.StatusInternalServerError
}

// ProblemFor builds the problem document for err; a fault's own RetryAfter
// wins over its code's. Errors without a fault code
// are classified: a database that could not answer in time (a lock,
// statement or idle-in-transaction timeout, a deadlock or serialization
// failure that outlasted its retries, a deadline met while waiting for a
// connection) is 503 service_unavailable with Retry-After; anything else is
// a generic 500 that reveals nothing about the cause.
func ProblemFor(err error) Problem {
	fe := faultOf(err)
	a, ok := answers[fe.Code]
	if !ok {
		a = answer{status: http.StatusInternalServerError}
	}
	if fe.RetryAfter > 0 {
		a.retryAfter = fe.RetryAfter
	}
	p := Problem{
		Type:       "https://tenantd.dev/problems/" + string(fe.Code),
		Title:      problemTitle(a.status),
		Status:     a.status,
		Detail:     fe.Message,
		Code:       fe.Code,
		Errors:     fe.Fields,
		RetryAfter: a.retryAfter,
	}
	var m membered
	if errors.As(err, &m) {
		p.Extra = m.ProblemMembers()
	}
	return p
}

// membered is an error whose problem document carries members of its own
// besides the standard ones.
type membered interface {
	error
	ProblemMembers() any
}

// MarshalJSON encodes the standard members, followed by Extra's.
func (p Problem) MarshalJSON() ([]byte, error) {
	type standard Problem // without this method
	b, err := json.Marshal(standard(p))
	if err != nil || p.Extra == nil {
		return b, err
	}
	extra, err := json.Marshal(p.Extra)
	if err != nil {
		return nil, err
	}
	if len(extra) <= 2 || extra[0] != '{' {
		return b, nil // no members, or not an object
	}
	return append(append(b[:len(b)-1], ','), extra[1:]...), nil
}

// faultOf returns the fault of err: its own, or the one its cause means.
func faultOf(err error) *fault.Error {
	if fe, ok := fault.As(err); ok {
		return fe
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if msg, ok := unavailableStates[pg.Code]; ok {
			return fault.New(fault.Unavailable, msg)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fault.New(fault.Unavailable, "the request ran out of time waiting for the database or another service; retry shortly")
	}
	return fault.New(fault.Internal, "an internal error occurred; quote the request id when reporting it")
}

func problemTitle(status int) string {
	if status == StatusClientClosedRequest {
		return "Client Closed Request"
	}
	return http.StatusText(status)
}

// Error writes err as problem+json and aborts the chain. Server errors are
// logged with their cause (503s as warnings); the client sees only the
// request id. An error caused by the client hanging up (its request's
// context cancelled) is answered 499 client_closed_request and not logged
// here: the access log records it, as no server error.
func Error(c *gin.Context, err error) {
	ctx := c.Request.Context()
	p := ProblemFor(err)
	if p.Status >= 500 && ClientGone(ctx) && cancelled(err) {
		p = ProblemFor(fault.New(CodeClientClosed, "the client closed the request"))
	}
	switch {
	case p.Status == http.StatusServiceUnavailable:
		slog.WarnContext(ctx, "request failed", "err", err, "status", p.Status, "path", c.FullPath())
	case p.Status >= 500:
		slog.ErrorContext(ctx, "request failed", "err", err, "status", p.Status, "path", c.FullPath())
	}
	c.Error(err) //nolint:errcheck // recorded for the access log; the return is the same error
	WriteProblem(c, p)
}

// WriteProblem writes a problem document and aborts the chain.
func WriteProblem(c *gin.Context, p Problem) {
	p.Instance = c.Request.URL.Path
	c.Header("Content-Type", "application/problem+json")
	if p.RetryAfter > 0 && c.Writer.Header().Get("Retry-After") == "" {
		c.Header("Retry-After", strconv.FormatInt(int64((p.RetryAfter+time.Second-1)/time.Second), 10))
	}
	c.AbortWithStatusJSON(p.Status, p)
}

// Fail writes a problem for a code and message.
func Fail(c *gin.Context, code fault.Code, message string) {
	Error(c, fault.New(code, message))
}

// ClientGone reports whether ctx, a request's context, ended because the
// client went away (net/http cancels it when the connection closes).
func ClientGone(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// cancelled reports whether err is what a cancelled context leaves behind:
// the context's own error, PostgreSQL's query_canceled, or a transaction
// database/sql already rolled back.
func cancelled(err error) bool {
	var pg *pgconn.PgError
	return errors.Is(err, context.Canceled) || errors.Is(err, sql.ErrTxDone) ||
		errors.As(err, &pg) && pg.Code == "57014"
}

// ObservedStatus is the status to log and count for a finished request
// whose context (as it was when the request arrived) is reqCtx: the status
// written, except that a request whose client went away before it was
// answered, or while it failed, is 499 (StatusClientClosedRequest) and not
// a server error.
func ObservedStatus(reqCtx context.Context, w gin.ResponseWriter) int {
	status := w.Status()
	if ClientGone(reqCtx) && (!w.Written() || status >= 500) {
		return StatusClientClosedRequest
	}
	return status
}
