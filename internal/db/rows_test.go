package db_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// rowOfTenant is a row of the table rowsTable creates.
type rowOfTenant struct {
	TenantID uuid.UUID
	ID       uuid.UUID
	N        int
}

// errNoRow is the not-found error the tests hand to Take.
var errNoRow = errors.New("no such row")

// rowsTable creates a table of the test's own as the owner (no row-level
// security), keyed by (tenant_id, id), with the row (tenant, id, n) of each
// tenant in ns: the same id in several tenants. The table is in a schema
// of its own, out of sight of the catalog tests' checks of public's tenant
// tables. It returns the owner's pool and the table's qualified name.
func rowsTable(t *testing.T, id uuid.UUID, ns map[uuid.UUID]int) (*gorm.DB, string) {
	t.Helper()
	d := testenv.Get(t).OpenOwnerDB(t).Unscoped(t.Context())
	schema := "rows_test_" + testenv.RandomHex(4)
	name := schema + ".tenant_rows"
	if err := d.Exec("CREATE SCHEMA " + schema + "; CREATE TABLE " + name + " (tenant_id uuid, id uuid, n int NOT NULL, PRIMARY KEY (tenant_id, id))").Error; err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	for tenant, n := range ns {
		if err := d.Exec("INSERT INTO "+name+" (tenant_id, id, n) VALUES (?, ?, ?)", tenant, id, n).Error; err != nil {
			t.Fatalf("insert into %s: %v", name, err)
		}
	}
	return d, name
}

// TestTenantRow: the row of the tenant asked for, not another tenant's
// row with the same id; notFound, as it is, when the tenant has no such
// row; any other error wrapped with the table's name.
func TestTenantRow(t *testing.T) {
	t.Parallel()
	a, b, c, id := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	d, table := rowsTable(t, id, map[uuid.UUID]int{a: 1, b: 2})
	for tenant, want := range map[uuid.UUID]int{a: 1, b: 2} {
		got, err := db.TenantRow[rowOfTenant](d.Table(table), tenant, id, false, errNoRow)
		if err != nil || got != (rowOfTenant{TenantID: tenant, ID: id, N: want}) {
			t.Errorf("tenant %s: got %+v, %v; want its row, n = %d", tenant, got, err, want)
		}
	}
	for name, q := range map[string]struct{ tenant, id uuid.UUID }{
		"another tenant's id": {c, id},
		"an unknown id":       {a, uuid.New()},
	} {
		got, err := db.TenantRow[rowOfTenant](d.Table(table), q.tenant, q.id, false, errNoRow)
		if err != errNoRow || got != (rowOfTenant{}) {
			t.Errorf("%s: got %+v, %v; want no row and the not-found error itself", name, got, err)
		}
	}
	_, err := db.TenantRow[rowOfTenant](d.Table(table).Where("no_such_column = 1"), a, id, false, errNoRow)
	if err == nil || errors.Is(err, errNoRow) || db.SQLState(err) != "42703" || !strings.HasPrefix(err.Error(), "read tenant_rows: ") {
		t.Errorf("bad query: got %v, want the undefined column (42703) wrapped as read tenant_rows", err)
	}
}

// TestTakeForUpdate: with forUpdate the row stays locked until the
// transaction ends (another transaction's FOR UPDATE NOWAIT fails with
// 55P03); without it the row is read unlocked.
func TestTakeForUpdate(t *testing.T) {
	t.Parallel()
	tenant, id := uuid.New(), uuid.New()
	d, table := rowsTable(t, id, map[uuid.UUID]int{tenant: 7})
	for _, forUpdate := range []bool{true, false} {
		want := map[bool]string{true: "55P03", false: ""}[forUpdate]
		err := d.Transaction(func(tx *gorm.DB) error {
			r, err := db.Take[rowOfTenant](tx.Table(table).Where("tenant_id = ? AND id = ?", tenant, id), forUpdate, errNoRow)
			if err != nil || r.N != 7 {
				t.Fatalf("forUpdate %v: got %+v, %v; want n = 7", forUpdate, r, err)
			}
			var n []int
			other := d.Raw("SELECT n FROM "+table+" WHERE tenant_id = ? AND id = ? FOR UPDATE NOWAIT", tenant, id).Scan(&n).Error
			if got := db.SQLState(other); got != want {
				t.Errorf("forUpdate %v: another transaction's lock got %v (SQLSTATE %q), want SQLSTATE %q", forUpdate, other, got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSQLState: the code of the PostgreSQL error anywhere in err's chain,
// and "" for no error or any other error.
func TestSQLState(t *testing.T) {
	t.Parallel()
	divByZero := testenv.Get(t).OpenDB(t, 1).Unscoped(t.Context()).Exec("SELECT 1/0").Error
	deadlock := &pgconn.PgError{Code: "40P01"}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"a statement's error from the server", divByZero, "22012"},
		{"a PostgreSQL error", deadlock, "40P01"},
		{"wrapped", fmt.Errorf("append: %w", deadlock), "40P01"},
		{"joined with another error", errors.Join(errors.New("first"), deadlock), "40P01"},
		{"another error", errors.New("not from PostgreSQL"), ""},
		{"no error", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := db.SQLState(tt.err); got != tt.want {
				t.Errorf("SQLState(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

// TestRead: the value fn returns, read in a transaction bound to the
// tenant; fn's error as it is, with the zero value whatever fn returned
// beside it; after a serialization failure fn runs again and the value of
// the attempt that committed is returned; no tenant is ErrNoTenant, fn
// not run.
func TestRead(t *testing.T) {
	t.Parallel()
	app, tenantID := testenv.Get(t).OpenDB(t, 1), testenv.NewTenant(t).ID
	ctx := t.Context()

	got, err := db.Read(ctx, app, tenantID, func(tx *gorm.DB) (string, error) {
		return settingOf(t, tx, "app.tenant_id"), nil
	})
	if err != nil || got != tenantID.String() {
		t.Errorf("got %q, %v; want the bound tenant %s", got, err, tenantID)
	}

	failed := errors.New("fn failed")
	n, err := db.Read(ctx, app, tenantID, func(*gorm.DB) (int, error) { return 7, failed })
	if !errors.Is(err, failed) || n != 0 {
		t.Errorf("failing fn: got %d, %v; want 0 and its error", n, err)
	}

	attempts := 0
	n, err = db.Read(ctx, app, tenantID, func(*gorm.DB) (int, error) {
		attempts++
		if attempts == 1 {
			return attempts, &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		return attempts, nil
	})
	if err != nil || n != 2 || attempts != 2 {
		t.Errorf("after a serialization failure: got %d, %v in %d attempts; want 2, nil in 2", n, err, attempts)
	}

	ran := false
	_, err = db.Read(ctx, app, uuid.Nil, func(*gorm.DB) (int, error) { ran = true; return 1, nil })
	if !errors.Is(err, db.ErrNoTenant) || ran {
		t.Errorf("no tenant: got %v, fn ran %t; want ErrNoTenant, fn not run", err, ran)
	}
}
