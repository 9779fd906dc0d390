package db_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestPoolDoesNotLeakTenant hammers a two-connection pool with interleaved
// tenants and tenant-less queries: every call must see exactly its own
// tenant, and a tenant-less query on a reused connection must see none.
func TestPoolDoesNotLeakTenant(t *testing.T) {
	t.Parallel()
	owner, app, a, b := twoTenants(t, 2)
	insertProducts(t, owner, a, "A-1", "A-2")
	insertProducts(t, owner, b, "B-1")
	want := map[uuid.UUID][]string{a: {"A-1", "A-2"}, b: {"B-1"}}

	if got := app.Stats().MaxOpenConnections; got != 2 {
		t.Fatalf("got MaxOpenConnections %d, want 2", got)
	}

	const workers, opsPerWorker = 16, 25 // 400 operations
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range opsPerWorker {
				if err := poolOp(t, app, (w+i)%3, a, b, want); err != nil {
					t.Errorf("worker %d op %d: %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := app.Stats().OpenConnections; got > 2 {
		t.Errorf("got %d open connections, want at most 2", got)
	}
}

// poolOp runs one operation: kind 0 and 1 as tenant a or b, kind 2 without
// a tenant.
func poolOp(t *testing.T, app *db.DB, kind int, a, b uuid.UUID, want map[uuid.UUID][]string) error {
	ctx := t.Context()
	if kind == 2 {
		got, err := tenantSettingOf(app.Unscoped(ctx))
		if err != nil {
			return err
		}
		if got != "" {
			return fmt.Errorf("no tenant: got app.tenant_id %q, want empty", got)
		}
		var n int64
		if err := app.Unscoped(ctx).Raw("SELECT count(*) FROM products").Scan(&n).Error; err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("no tenant: got %d products, want 0", n)
		}
		return nil
	}
	tenant := []uuid.UUID{a, b}[kind]
	return app.WithTenant(ctx, tenant, func(tx *gorm.DB) error {
		got, err := tenantSettingOf(tx)
		if err != nil {
			return err
		}
		if got != tenant.String() {
			return fmt.Errorf("got app.tenant_id %q, want %s", got, tenant)
		}
		var skus []string
		if err := tx.Raw("SELECT sku FROM products ORDER BY sku").Scan(&skus).Error; err != nil {
			return err
		}
		if !slices.Equal(skus, want[tenant]) {
			return fmt.Errorf("tenant %s: got SKUs %v, want %v", tenant, skus, want[tenant])
		}
		return nil
	})
}

// TestFailedTransactionDoesNotLeakTenant proves that a WithTenant that rolls
// back (fn's error, a failed statement, a panic) leaves nothing of the
// tenant on the connection, which a one-connection pool hands out next.
func TestFailedTransactionDoesNotLeakTenant(t *testing.T) {
	t.Parallel()
	_, a, _ := tenantProducts(t, "L-1")
	app := testenv.Get(t).OpenDB(t, 1)
	ctx := t.Context()
	errBoom := errors.New("boom")

	tests := []struct {
		name string
		fn   func(tx *gorm.DB) error
	}{
		{"fn returns an error", func(*gorm.DB) error { return errBoom }},
		{"statement fails", func(tx *gorm.DB) error { return tx.Exec("SELECT 1/0").Error }},
		{"fn panics", func(*gorm.DB) error { panic(errBoom) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pidInside int64
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("panic: %v", r)
					}
				}()
				return app.WithTenant(ctx, a, func(tx *gorm.DB) error {
					if err := tx.Raw("SELECT pg_backend_pid()").Scan(&pidInside).Error; err != nil {
						return err
					}
					var n int64
					if err := tx.Raw("SELECT count(*) FROM products").Scan(&n).Error; err != nil {
						return err
					}
					if n != 1 {
						t.Errorf("inside: got %d products, want 1", n)
					}
					return tt.fn(tx)
				})
			}()
			if err == nil {
				t.Fatal("got nil from WithTenant, want the failure")
			}

			var pidAfter int64
			if err := app.Unscoped(ctx).Raw("SELECT pg_backend_pid()").Scan(&pidAfter).Error; err != nil {
				t.Fatal(err)
			}
			if pidAfter != pidInside {
				t.Fatalf("got backend %d after, %d inside, want the same connection reused", pidAfter, pidInside)
			}
			got, err := tenantSettingOf(app.Unscoped(ctx))
			if err != nil {
				t.Fatal(err)
			}
			if got != "" {
				t.Errorf("got app.tenant_id %q after rollback, want empty", got)
			}
			if n := count(t, app.Unscoped(ctx), "products"); n != 0 {
				t.Errorf("got %d products after rollback, want 0", n)
			}
		})
	}
}
