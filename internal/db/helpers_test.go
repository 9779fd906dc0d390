package db_test

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// tenantProducts opens an owner pool and creates a tenant with products of
// the given SKUs (see insertProducts); it returns the pool, the tenant and
// the products' ids in the order of skus.
func tenantProducts(t testing.TB, skus ...string) (owner *db.DB, tenantID uuid.UUID, ids []uuid.UUID) {
	t.Helper()
	owner = testenv.Get(t).OpenOwnerDB(t)
	tenantID = testenv.NewTenant(t).ID
	return owner, tenantID, insertProducts(t, owner, tenantID, skus...)
}

// insertProducts inserts products with the given SKUs for tenantID as owner
// and returns their ids in the order of skus.
func insertProducts(t testing.TB, owner *db.DB, tenantID uuid.UUID, skus ...string) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, len(skus))
	err := owner.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error {
		for i, sku := range skus {
			ids[i] = uuid.New()
			err := tx.Exec(`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
				VALUES (?, ?, ?, ?, 100, 'EUR', 5)`, tenantID, ids[i], sku, "Product "+sku).Error
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("insert products: %v", err)
	}
	return ids
}

// inTenant runs fn in a transaction of tenantID on d and fails t if it
// returns an error.
func inTenant(t testing.TB, d *db.DB, tenantID uuid.UUID, fn func(tx *gorm.DB) error) {
	t.Helper()
	if err := d.WithTenant(t.Context(), tenantID, fn); err != nil {
		t.Fatalf("transaction of tenant %s: %v", tenantID, err)
	}
}

// twoTenants opens an owner pool and a runtime pool of maxConns
// connections and creates two tenants.
func twoTenants(t testing.TB, maxConns int) (owner, app *db.DB, a, b uuid.UUID) {
	t.Helper()
	env := testenv.Get(t)
	return env.OpenOwnerDB(t), env.OpenDB(t, maxConns), testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
}

// quote returns table as a quoted SQL identifier.
func quote(table string) string { return pgx.Identifier{table}.Sanitize() }

// sqlState is db.SQLState, by the name the package's tests call it.
var sqlState = db.SQLState

// wantSQLState fails t unless err is a PostgreSQL error with code want.
func wantSQLState(t testing.TB, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want SQLSTATE %s", want)
	}
	if got := db.SQLState(err); got != want {
		t.Fatalf("got error %v (SQLSTATE %q), want SQLSTATE %s", err, got, want)
	}
}

// count returns count(*) of table as seen by tx.
func count(t testing.TB, tx *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := tx.Raw("SELECT count(*) FROM " + quote(table)).Scan(&n).Error; err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// tenantSettingOf reads app.tenant_id as tx sees it; "" when unset.
func tenantSettingOf(tx *gorm.DB) (string, error) {
	var s string
	err := tx.Raw("SELECT coalesce(current_setting('app.tenant_id', true), '')").Scan(&s).Error
	return s, err
}

// withUser returns raw with its user and password replaced.
func withUser(t testing.TB, raw, user, password string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse url: %v", err)
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

// TestFixtures proves tenantProducts returns the ids its products were
// stored with, each under its SKU and the tenant, inTenant binds the
// tenant, and twoTenants gives two tenants and pools of the owner and the
// runtime role.
func TestFixtures(t *testing.T) {
	t.Parallel()
	owner, tenantID, ids := tenantProducts(t, "FIX-A", "FIX-B")
	stored := make([]uuid.UUID, 2)
	var setting string
	inTenant(t, owner, tenantID, func(tx *gorm.DB) error {
		setting = settingOf(t, tx, "app.tenant_id")
		for i, sku := range []string{"FIX-A", "FIX-B"} {
			if err := tx.Raw("SELECT id FROM products WHERE tenant_id = ? AND sku = ?", tenantID, sku).Row().Scan(&stored[i]); err != nil {
				return fmt.Errorf("product %s: %w", sku, err)
			}
		}
		return nil
	})
	if setting != tenantID.String() {
		t.Errorf("inTenant: got app.tenant_id %q, want %s", setting, tenantID)
	}
	if !slices.Equal(ids, stored) {
		t.Errorf("got ids %v, want the stored %v", ids, stored)
	}

	owner, app, a, b := twoTenants(t, 1)
	if a == b || a == uuid.Nil || b == uuid.Nil {
		t.Errorf("got tenants %s and %s, want two", a, b)
	}
	for _, p := range []struct {
		d    *db.DB
		want string
	}{{owner, "tenantd_owner"}, {app, "tenantd_app"}} {
		var user string
		if err := p.d.Unscoped(t.Context()).Raw("SELECT current_user").Scan(&user).Error; err != nil {
			t.Fatal(err)
		}
		if user != p.want {
			t.Errorf("got pool of %s, want %s", user, p.want)
		}
	}
	if got := app.Stats().MaxOpenConnections; got != 1 {
		t.Errorf("got MaxOpenConnections %d, want 1", got)
	}
}
