package db_test

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestAfterCommit proves a function registered with AfterCommit runs once
// its transaction has committed, never when it rolls back, and once when
// WithTenant had to run the transaction again.
func TestAfterCommit(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 2)
	tenant := testenv.NewTenant(t).ID
	errRollback := errors.New("roll back")
	deadlock := &pgconn.PgError{Code: "40P01", Message: "deadlock detected (simulated)"}
	tests := []struct {
		name     string
		failures []error // what the attempts return before the last, which returns last
		last     error
		want     int
	}{
		{"committed", nil, nil, 1},
		{"rolled back", nil, errRollback, 0},
		{"committed after a retried deadlock", []error{deadlock}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran, attempts := 0, 0
			err := app.WithTenant(t.Context(), tenant, func(tx *gorm.DB) error {
				if !db.AfterCommit(tx, func() { ran++ }) {
					t.Fatal("got AfterCommit refused inside WithTenant, want it registered")
				}
				if ran != 0 {
					t.Errorf("got the function run before commit")
				}
				attempts++
				if attempts <= len(tt.failures) {
					return tt.failures[attempts-1]
				}
				return tt.last
			})
			if !errors.Is(err, tt.last) {
				t.Fatalf("got %v, want %v", err, tt.last)
			}
			if ran != tt.want {
				t.Errorf("got the function run %d times, want %d", ran, tt.want)
			}
		})
	}
	t.Run("outside a transaction", func(t *testing.T) {
		if db.AfterCommit(app.Unscoped(t.Context()), func() {}) {
			t.Error("got AfterCommit accepted outside a transaction, want false")
		}
	})
}
