package db_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/testenv"
)

// TestBeforeCommit proves the BeforeCommit hook runs in WithTenant's
// transaction after fn, with its context and tenant; that its writes
// commit and roll back with fn's; that an error from it rolls fn back; and
// that it is told whether the transaction committed.
func TestBeforeCommit(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	owner := env.OpenOwnerDB(t)
	tenantID := testenv.NewTenant(t).ID
	errHook, errFn := errors.New("hook refused"), errors.New("fn failed")
	type ctxKey struct{}

	tests := []struct {
		name        string
		fn          func(tx *gorm.DB) error
		hookErr     error
		wantErr     error  // nil, or an error WithTenant's must wrap
		wantState   string // SQLSTATE WithTenant's error must carry, if any
		wantCalled  bool
		wantAfter   string // "committed", "failed" or "" (not called)
		wantSKUs    []string
		wantSetting bool // the hook saw fn's transaction (its tenant setting)
	}{
		{
			name:       "commits with fn",
			fn:         insertSKU("fn-ok"),
			wantCalled: true, wantAfter: "committed", wantSKUs: []string{"fn-ok", "hook"}, wantSetting: true,
		},
		{
			name:    "fn fails: hook not run",
			fn:      func(tx *gorm.DB) error { return errors.Join(insertSKU("fn-fails")(tx), errFn) },
			wantErr: errFn,
		},
		{
			name:       "hook fails: fn rolled back",
			fn:         insertSKU("fn-hook-fails"),
			hookErr:    errHook,
			wantErr:    errHook,
			wantCalled: true, wantAfter: "failed", wantSetting: true,
		},
		{
			// A deferred unique violation fails the COMMIT itself.
			name: "commit fails: told so",
			fn: func(tx *gorm.DB) error {
				if err := insertSKU("fn-commit-fails")(tx); err != nil {
					return err
				}
				if err := tx.Exec("CREATE TEMP TABLE deferred_check (x int UNIQUE DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP").Error; err != nil {
					return err
				}
				return tx.Exec("INSERT INTO deferred_check VALUES (1), (1)").Error
			},
			wantState:  "23505",
			wantCalled: true, wantAfter: "failed", wantSetting: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := env.OpenDB(t, 1)
			tn := testenv.NewTenant(t).ID
			var (
				called  bool
				after   string
				setting string
				gotCtx  any
			)
			app.SetBeforeCommit(func(ctx context.Context, tx *gorm.DB, id uuid.UUID) (func(bool), error) {
				called, gotCtx = true, ctx.Value(ctxKey{})
				var err error
				if setting, err = tenantSettingOf(tx); err != nil {
					return nil, err
				}
				if id != tn {
					t.Errorf("hook got tenant %s, want %s", id, tn)
				}
				if err := insertSKU("hook")(tx); err != nil {
					return nil, err
				}
				return func(committed bool) {
					after = map[bool]string{true: "committed", false: "failed"}[committed]
				}, tt.hookErr
			})
			ctx := context.WithValue(t.Context(), ctxKey{}, "request")
			err := app.WithTenant(ctx, tn, tt.fn)
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("got error %v, want %v", err, tt.wantErr)
			case tt.wantState != "" && sqlState(err) != tt.wantState:
				t.Errorf("got error %v, want SQLSTATE %s", err, tt.wantState)
			case tt.wantErr == nil && tt.wantState == "" && err != nil:
				t.Errorf("got error %v, want nil", err)
			}
			if called != tt.wantCalled || after != tt.wantAfter {
				t.Errorf("got hook called %v, after %q; want %v, %q", called, after, tt.wantCalled, tt.wantAfter)
			}
			if called && (gotCtx != "request" || (setting == tn.String()) != tt.wantSetting) {
				t.Errorf("hook got context value %v and tenant setting %q, want the caller's context and tenant %s", gotCtx, setting, tn)
			}
			var skus []string
			inTenant(t, owner, tn, func(tx *gorm.DB) error {
				return tx.Raw("SELECT split_part(sku, '/', 1) FROM products WHERE tenant_id = ? ORDER BY 1", tn).Scan(&skus).Error
			})
			if !slices.Equal(skus, tt.wantSKUs) {
				t.Errorf("got products %v, want %v", skus, tt.wantSKUs)
			}
		})
	}

	t.Run("no hook, WithPlatform", func(t *testing.T) {
		app := env.OpenDB(t, 1)
		called := false
		app.SetBeforeCommit(func(context.Context, *gorm.DB, uuid.UUID) (func(bool), error) {
			called = true
			return nil, nil
		})
		if err := app.WithPlatform(t.Context(), func(tx *gorm.DB) error { return tx.Exec("SELECT 1").Error }); err != nil {
			t.Fatal(err)
		}
		if called {
			t.Error("got the hook run by WithPlatform, want it only in WithTenant")
		}
		app.SetBeforeCommit(nil)
		if err := app.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error { return nil }); err != nil || called {
			t.Errorf("after removing the hook: got error %v, hook called %v; want nil, false", err, called)
		}
	})
}

// insertSKU inserts a product of the transaction's tenant with a sku
// starting with prefix.
func insertSKU(prefix string) func(tx *gorm.DB) error {
	return func(tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
			VALUES ((SELECT nullif(current_setting('app.tenant_id', true), '')::uuid), ?, ?, 'Hooked', 100, 'EUR', 1)`,
			uuid.New(), prefix+"/"+uuid.NewString()[:8]).Error
	}
}
