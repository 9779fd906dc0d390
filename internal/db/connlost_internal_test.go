package db

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantd/tenantd/internal/fault"
)

// TestClassify proves a lost connection becomes service_unavailable (503
// with Retry-After) and anything else keeps its own meaning.
func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		lost bool
	}{
		{"server shut down", &pgconn.PgError{Code: "57P01"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"unexpected EOF", fmt.Errorf("query: %w", io.ErrUnexpectedEOF), true},
		{"bad connection", driver.ErrBadConn, true},
		{"refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"lock timeout", &pgconn.PgError{Code: "55P03"}, false},
		{"plain error", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err)
			if !errors.Is(got, tt.err) {
				t.Errorf("got %v, want it to wrap %v", got, tt.err)
			}
			if code := fault.CodeOf(got); (code == fault.Unavailable) != tt.lost {
				t.Errorf("got code %s, want service_unavailable: %v", code, tt.lost)
			}
			// At BEGIN, a lost connection is retried: nothing ran.
			if _, retry := retryable(fmt.Errorf("%w: %w", errBegin, tt.err)); retry != tt.lost {
				t.Errorf("got retry %v at begin, want %v", retry, tt.lost)
			}
		})
	}
}
