package httpx_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

func pgErr(code, msg string) error {
	return fmt.Errorf("update products: %w", &pgconn.PgError{Severity: "ERROR", Code: code, Message: msg})
}

// TestProblemFor proves the mapping of errors without a request: fault
// codes through the table; a database that could not answer in time 503
// service_unavailable with Retry-After; anything else a 500 that reveals
// nothing.
func TestProblemFor(t *testing.T) {
	tests := []struct {
		name           string
		err            error
		wantStatus     int
		wantCode       fault.Code
		wantRetryAfter time.Duration
	}{
		{"fault code", fault.New(fault.NotFound, "no such product"), http.StatusNotFound, fault.NotFound, 0},
		{"unavailable fault", fault.New(fault.Unavailable, "busy"), http.StatusServiceUnavailable, fault.Unavailable, time.Second},
		{"gateway unavailable keeps its own", fault.New(fault.GatewayUnavailable, "down"), http.StatusServiceUnavailable, fault.GatewayUnavailable, 0},
		{"lock_timeout", pgErr("55P03", "canceling statement due to lock timeout"), http.StatusServiceUnavailable, fault.Unavailable, time.Second},
		{"statement_timeout", pgErr("57014", "canceling statement due to statement timeout"), http.StatusServiceUnavailable, fault.Unavailable, time.Second},
		{"idle_in_transaction_session_timeout", pgErr("25P03", "terminating connection due to idle-in-transaction timeout"), http.StatusServiceUnavailable, fault.Unavailable, time.Second},
		{"deadlock after retries", fmt.Errorf("after 3 attempts: %w", pgErr("40P01", "deadlock detected")), http.StatusServiceUnavailable, fault.Unavailable, time.Second},
		{"serialization failure after retries", pgErr("40001", "could not serialize access"), http.StatusServiceUnavailable, fault.Unavailable, time.Second},
		{"too many connections", pgErr("53300", "too many clients"), http.StatusServiceUnavailable, fault.Unavailable, time.Second},
		{"no connection before the deadline", fmt.Errorf("begin: %w", context.DeadlineExceeded), http.StatusServiceUnavailable, fault.Unavailable, time.Second},
		{"other database error", pgErr("23505", "duplicate key"), http.StatusInternalServerError, fault.Internal, 0},
		{"anything else", errors.New("boom"), http.StatusInternalServerError, fault.Internal, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := httpx.ProblemFor(tt.err)
			if p.Status != tt.wantStatus || p.Code != tt.wantCode || p.RetryAfter != tt.wantRetryAfter {
				t.Fatalf("got %d %s Retry-After %v, want %d %s Retry-After %v",
					p.Status, p.Code, p.RetryAfter, tt.wantStatus, tt.wantCode, tt.wantRetryAfter)
			}
			if strings.Contains(p.Detail, "SQLSTATE") || strings.Contains(p.Detail, "products") {
				t.Errorf("detail %q reveals the cause", p.Detail)
			}
		})
	}
}

// TestError proves what a handler's httpx.Error answers and logs, with the
// client still there or gone: a cancellation the client caused is 499
// client_closed_request and logged as no error; the same cancellation with
// the client still there, or any other failure, is not disguised as one.
func TestError(t *testing.T) {
	gin.SetMode(gin.TestMode)
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	tests := []struct {
		name           string
		err            error
		clientGone     bool
		retryAfter     string // set by the handler before
		wantStatus     int
		wantCode       fault.Code
		wantRetryAfter string
		wantLog        string // level of the "request failed" line; "" for none
	}{
		{name: "client gone: context canceled", err: fmt.Errorf("list: %w", context.Canceled), clientGone: true,
			wantStatus: httpx.StatusClientClosedRequest, wantCode: httpx.CodeClientClosed},
		{name: "client gone: statement cancelled", err: pgErr("57014", "canceling statement due to user request"), clientGone: true,
			wantStatus: httpx.StatusClientClosedRequest, wantCode: httpx.CodeClientClosed},
		{name: "client gone: transaction rolled back", err: sql.ErrTxDone, clientGone: true,
			wantStatus: httpx.StatusClientClosedRequest, wantCode: httpx.CodeClientClosed},
		{name: "client gone: a client error stays", err: fault.New(fault.NotFound, "no such product"), clientGone: true,
			wantStatus: http.StatusNotFound, wantCode: fault.NotFound},
		{name: "client gone: a bug stays a bug", err: errors.New("nil map"), clientGone: true,
			wantStatus: http.StatusInternalServerError, wantCode: fault.Internal, wantLog: "ERROR"},
		{name: "client there: canceled by us", err: context.Canceled,
			wantStatus: http.StatusInternalServerError, wantCode: fault.Internal, wantLog: "ERROR"},
		{name: "client there: statement timeout", err: pgErr("57014", "canceling statement due to statement timeout"),
			wantStatus: http.StatusServiceUnavailable, wantCode: fault.Unavailable, wantRetryAfter: "1", wantLog: "WARN"},
		{name: "handler's Retry-After kept", err: fault.New(fault.Unavailable, "busy"), retryAfter: "7",
			wantStatus: http.StatusServiceUnavailable, wantCode: fault.Unavailable, wantRetryAfter: "7", wantLog: "WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.clientGone {
				cancel()
			}
			rec := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(rec)
			c.Request = httptest.NewRequestWithContext(ctx, http.MethodGet, "/v1/products", nil)
			if tt.retryAfter != "" {
				c.Header("Retry-After", tt.retryAfter)
			}
			httpx.Error(c, tt.err)

			var p httpx.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("decode problem: %v", err)
			}
			if rec.Code != tt.wantStatus || p.Status != tt.wantStatus || p.Code != tt.wantCode {
				t.Fatalf("got %d (document %d %s), want %d %s", rec.Code, p.Status, p.Code, tt.wantStatus, tt.wantCode)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("got Retry-After %q, want %q", got, tt.wantRetryAfter)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/problem+json" {
				t.Errorf("got Content-Type %q, want application/problem+json", got)
			}
			line := logs.String()
			switch {
			case tt.wantLog == "" && line != "":
				t.Errorf("got log %q, want none", line)
			case tt.wantLog != "" && !strings.Contains(line, "level="+tt.wantLog):
				t.Errorf("got log %q, want a %s line", line, tt.wantLog)
			}
		})
	}
}
