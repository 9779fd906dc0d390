package db_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/testenv"
)

// TestCommitOutlivesCancellation: once fn has succeeded, the COMMIT is
// sent even if the caller's context ends at that moment, so the outcome is
// known (committed), not lost with a cancelled COMMIT.
func TestCommitOutlivesCancellation(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	owner, app := env.OpenOwnerDB(t), env.OpenDB(t, 2)
	tenant := testenv.NewTenant(t).ID
	ctx, cancel := context.WithCancel(t.Context())
	err := app.WithTenant(ctx, tenant, func(tx *gorm.DB) error {
		if err := tx.Exec(`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
			VALUES (?, gen_random_uuid(), 'CANCELLED-COMMIT', 'x', 1, 'EUR', 1)`, tenant).Error; err != nil {
			return err
		}
		cancel() // the client hangs up just as fn returns
		return nil
	})
	if err != nil {
		t.Fatalf("got %v, want the transaction committed", err)
	}
	var n int64
	inTenant(t, owner, tenant, func(tx *gorm.DB) error {
		// The owner may see past the tenant (its own policies): filter.
		return tx.Raw("SELECT count(*) FROM products WHERE tenant_id = ? AND sku = 'CANCELLED-COMMIT'", tenant).Scan(&n).Error
	})
	if n != 1 {
		t.Errorf("got %d rows, want the committed one", n)
	}
}

// TestSwallowedStatementError: when fn carries on after a failed statement,
// the COMMIT that PostgreSQL turns into a rollback reports that statement's
// error, so it keeps its meaning (and a deadlock its retry).
func TestSwallowedStatementError(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 2)
	tenant := testenv.NewTenant(t).ID
	err := app.WithTenant(t.Context(), tenant, func(tx *gorm.DB) error {
		tx.Exec("SELECT 1/0") // its error swallowed, as a careless caller would
		return nil
	})
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "22012" {
		t.Errorf("got %v, want the swallowed division by zero (22012)", err)
	}
}
