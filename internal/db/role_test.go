package db_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// openAdmin opens a superuser pool on the server, closed when the test ends.
func openAdmin(t testing.TB, env *testenv.Env) *db.DB {
	t.Helper()
	admin, err := db.Open(t.Context(), env.AdminURL, db.Options{MaxConns: 2})
	if err != nil {
		t.Fatalf("open admin database: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	return admin
}

// createLoginRole creates a throw-away login role with the given extra
// attributes (e.g. "BYPASSRLS", "IN ROLE tenantd_owner"), allowed to connect
// to the package's database, and returns its runtime URL. The role is dropped
// when the test ends, after every pool opened later has closed.
func createLoginRole(t *testing.T, env *testenv.Env, admin *db.DB, attrs string) string {
	t.Helper()
	name := "tenantd_test_role_" + testenv.RandomHex(6)
	dbName := quote(env.DBName)
	if err := admin.Unscoped(t.Context()).Exec("CREATE ROLE " + name + " LOGIN PASSWORD 'x' " + attrs).Error; err != nil {
		t.Fatalf("create role: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := admin.Unscoped(ctx).Exec("REVOKE CONNECT ON DATABASE " + dbName + " FROM " + name).Error; err != nil {
			t.Errorf("revoke connect from %s: %v", name, err)
		}
		if err := admin.Unscoped(ctx).Exec("DROP ROLE " + name).Error; err != nil {
			t.Errorf("drop role %s: %v", name, err)
		}
	})
	if err := admin.Unscoped(t.Context()).Exec("GRANT CONNECT ON DATABASE " + dbName + " TO " + name).Error; err != nil {
		t.Fatalf("grant connect: %v", err)
	}
	return withUser(t, env.AppURL, name, "x")
}

// TestCheckRuntimeRole proves the start-up check accepts tenantd_app and
// refuses every role that could see past row-level security.
func TestCheckRuntimeRole(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	admin := openAdmin(t, env)

	tests := []struct {
		name    string
		url     func(t *testing.T) string
		wantErr string // "" for no error
	}{
		{"runtime role", func(*testing.T) string { return env.AppURL }, ""},
		{"superuser", func(*testing.T) string { return env.AdminURL }, "superuser"},
		{"owner", func(*testing.T) string { return env.OwnerURL }, "owns"},
		{"bypassrls", func(t *testing.T) string { return createLoginRole(t, env, admin, "BYPASSRLS") }, "BYPASSRLS"},
		{"member of the owner", func(t *testing.T) string { return createLoginRole(t, env, admin, "IN ROLE tenantd_owner") }, "owns"},
		{"noinherit member of the owner", func(t *testing.T) string { return createLoginRole(t, env, admin, "NOINHERIT IN ROLE tenantd_owner") }, "owns"},
		{"createrole", func(t *testing.T) string { return createLoginRole(t, env, admin, "CREATEROLE") }, "CREATEROLE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url(t)
			d, err := db.Open(t.Context(), url, db.Options{MaxConns: 1})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer d.Close()
			err = d.CheckRuntimeRole(t.Context())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got error %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("got nil, want an error mentioning %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("got error %q, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestRuntimeRoleAttributes proves from the catalog that tenantd_app cannot
// bypass row-level security, and from its own session that it cannot turn
// it off or become the owner.
func TestRuntimeRoleAttributes(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 1)
	ctx := t.Context()

	var role struct {
		Name                                                      string
		Rolsuper, Rolbypassrls, Rolcreaterole, Rolcreatedb, Found bool
	}
	err := app.Unscoped(ctx).Raw(`
		SELECT current_user AS name, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, true AS found
		FROM pg_roles WHERE rolname = current_user`).Scan(&role).Error
	if err != nil {
		t.Fatal(err)
	}
	if !role.Found || role.Name != "tenantd_app" {
		t.Fatalf("got current_user %q (found %v), want tenantd_app", role.Name, role.Found)
	}
	for attr, got := range map[string]bool{
		"rolsuper":      role.Rolsuper,
		"rolbypassrls":  role.Rolbypassrls,
		"rolcreaterole": role.Rolcreaterole, // could grant itself the owner role
		"rolcreatedb":   role.Rolcreatedb,
	} {
		if got {
			t.Errorf("tenantd_app: got %s true, want false", attr)
		}
	}

	var owned []string
	err = app.Unscoped(ctx).Raw(`
		SELECT n.nspname || '.' || c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE pg_has_role('tenantd_app', c.relowner, 'MEMBER')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
		ORDER BY 1`).Scan(&owned).Error
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != 0 {
		t.Errorf("got relations owned by (a role of) tenantd_app %v, want none", owned)
	}

	for _, table := range append(tenantTables(t, app), "tenants") {
		t.Run("cannot disable RLS on "+table, func(t *testing.T) {
			err := app.Unscoped(ctx).Exec("ALTER TABLE " + quote(table) + " NO FORCE ROW LEVEL SECURITY").Error
			wantSQLState(t, err, "42501")
		})
	}
	t.Run("cannot become the owner", func(t *testing.T) {
		err := app.Unscoped(ctx).Exec("SET ROLE tenantd_owner").Error
		wantSQLState(t, err, "42501")
	})
	t.Run("cannot create a table", func(t *testing.T) {
		err := app.Unscoped(ctx).Exec("CREATE TABLE public.rls_test_escape (id int)").Error
		wantSQLState(t, err, "42501")
	})
}
