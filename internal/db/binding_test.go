package db_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// settingOf reads the custom setting name as tx sees it; "" when unset.
func settingOf(t testing.TB, tx *gorm.DB, name string) string {
	t.Helper()
	var s string
	if err := tx.Raw("SELECT coalesce(current_setting(?, true), '')", name).Scan(&s).Error; err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return s
}

// backendOf returns the PostgreSQL backend serving tx.
func backendOf(t testing.TB, tx *gorm.DB) int64 {
	t.Helper()
	var pid int64
	if err := tx.Raw("SELECT pg_backend_pid()").Scan(&pid).Error; err != nil {
		t.Fatalf("backend pid: %v", err)
	}
	return pid
}

// TestBindingIsTransactionLocal proves that app_bind_tenant and
// app_bind_platform (WithTenant, SetTenant, WithPlatform) bind for one
// transaction only: the next user of the pooled connection, after COMMIT
// and after ROLLBACK alike, finds no tenant and no platform flag, and sees
// no tenant's rows.
func TestBindingIsTransactionLocal(t *testing.T) {
	t.Parallel()
	_, a, _ := tenantProducts(t, "BIND-1")
	app := testenv.Get(t).OpenDB(t, 1) // one connection: every call reuses it
	errBoom := errors.New("boom")

	type scope func(fn func(tx *gorm.DB) error) error
	withTenant := func(fn func(tx *gorm.DB) error) error { return app.WithTenant(t.Context(), a, fn) }
	withPlatform := func(fn func(tx *gorm.DB) error) error { return app.WithPlatform(t.Context(), fn) }
	setTenant := func(fn func(tx *gorm.DB) error) error {
		return app.WithPlatform(t.Context(), func(tx *gorm.DB) error {
			if err := db.SetTenant(tx, a); err != nil {
				return err
			}
			return fn(tx)
		})
	}
	tests := []struct {
		name     string
		scope    scope
		setting  string
		want     string
		products int64 // seen inside
	}{
		{"WithTenant", withTenant, "app.tenant_id", a.String(), 1},
		{"SetTenant", setTenant, "app.tenant_id", a.String(), 1},
		{"WithPlatform", withPlatform, "app.platform", "on", 0},
	}
	for _, tt := range tests {
		for _, end := range []string{"commit", "rollback"} {
			t.Run(tt.name+" "+end, func(t *testing.T) {
				var pidInside int64
				err := tt.scope(func(tx *gorm.DB) error {
					pidInside = backendOf(t, tx)
					if got := settingOf(t, tx, tt.setting); got != tt.want {
						t.Errorf("inside: got %s %q, want %q", tt.setting, got, tt.want)
					}
					if got := count(t, tx, "products"); got != tt.products {
						t.Errorf("inside: got %d products, want %d", got, tt.products)
					}
					if end == "rollback" {
						return errBoom
					}
					return nil
				})
				if wantErr := map[string]error{"commit": nil, "rollback": errBoom}[end]; !errors.Is(err, wantErr) {
					t.Fatalf("got %v, want %v", err, wantErr)
				}
				after := app.Unscoped(t.Context())
				if pid := backendOf(t, after); pid != pidInside {
					t.Fatalf("got backend %d after, %d inside, want the pooled connection reused", pid, pidInside)
				}
				for _, name := range []string{"app.tenant_id", "app.platform"} {
					if got := settingOf(t, after, name); got != "" {
						t.Errorf("after %s: got %s %q, want it unset", end, name, got)
					}
				}
				for _, table := range []string{"products", "tenants"} {
					if n := count(t, after, table); n != 0 {
						t.Errorf("after %s: got %d rows of %s with nothing bound, want 0", end, n, table)
					}
				}
			})
		}
	}
}

// TestBindTenantRefusesNull proves that the tenant binding cannot be made
// with no tenant: app_bind_tenant(NULL) raises 22004 (null value not
// allowed) rather than binding "nothing", and the Go entry points refuse
// uuid.Nil before sending anything.
func TestBindTenantRefusesNull(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 1)
	ctx := t.Context()

	err := app.WithPlatform(ctx, func(tx *gorm.DB) error {
		return tx.Exec("SELECT app_bind_tenant(NULL)").Error
	})
	wantSQLState(t, err, "22004")
	err = app.Worker().WithPlatform(ctx, func(tx *gorm.DB) error {
		return tx.Exec("SELECT app_bind_tenant(?)", nil).Error
	})
	wantSQLState(t, err, "22004")

	if err := app.WithTenant(ctx, uuid.Nil, func(*gorm.DB) error { return nil }); !errors.Is(err, db.ErrNoTenant) {
		t.Errorf("WithTenant(uuid.Nil): got %v, want ErrNoTenant", err)
	}
	err = app.WithPlatform(ctx, func(tx *gorm.DB) error { return db.SetTenant(tx, uuid.Nil) })
	if !errors.Is(err, db.ErrNoTenant) {
		t.Errorf("SetTenant(uuid.Nil): got %v, want ErrNoTenant", err)
	}
}

// TestBindingRoles proves who may bind: the runtime role and the worker
// role (its member) may run both functions, PUBLIC may not; and the worker
// pool's transactions bind like the runtime pool's.
func TestBindingRoles(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 1)
	ctx := t.Context()
	a := testenv.NewTenant(t).ID

	for _, fn := range []string{"app_bind_tenant(uuid)", "app_bind_platform()"} {
		var got struct{ App, Worker, Public bool }
		err := app.Unscoped(ctx).Raw(`
			SELECT has_function_privilege('tenantd_app', ?::regprocedure, 'EXECUTE') AS app,
			       has_function_privilege('tenantd_worker', ?::regprocedure, 'EXECUTE') AS worker,
			       EXISTS (SELECT 1 FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
			               WHERE p.oid = ?::regprocedure AND a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public`,
			fn, fn, fn).Scan(&got).Error
		if err != nil {
			t.Fatalf("privileges of %s: %v", fn, err)
		}
		if !got.App || !got.Worker || got.Public {
			t.Errorf("%s: got EXECUTE app=%v worker=%v public=%v, want true, true, false", fn, got.App, got.Worker, got.Public)
		}
	}

	inTenant(t, app.Worker(), a, func(tx *gorm.DB) error {
		if got := settingOf(t, tx, "app.tenant_id"); got != a.String() {
			t.Errorf("worker pool: got app.tenant_id %q, want %s", got, a)
		}
		return nil
	})
}

// TestTenantPolicyIsIndexCondition proves that the tenant policy without a
// sub-select (0024) still reaches the index: current_setting is STABLE, so
// the planner takes the policy's comparison as an index condition, and no
// InitPlan or SubPlan is left in the plan.
func TestTenantPolicyIsIndexCondition(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 1)
	a := testenv.NewTenant(t).ID

	inTenant(t, app, a, func(tx *gorm.DB) error {
		// Tiny tables: without this the planner prefers a sequential scan.
		if err := tx.Exec("SET LOCAL enable_seqscan = off").Error; err != nil {
			return err
		}
		var lines []string
		if err := tx.Raw("EXPLAIN SELECT id FROM products WHERE sku = 'x'").Scan(&lines).Error; err != nil {
			return err
		}
		plan := strings.Join(lines, "\n")
		cond := regexp.MustCompile(`Index Cond: .*tenant_id = \(NULLIF\(current_setting\('app\.tenant_id'`)
		if !cond.MatchString(plan) {
			t.Errorf("got plan\n%s\nwant the tenant policy as an Index Cond", plan)
		}
		if strings.Contains(plan, "InitPlan") || strings.Contains(plan, "SubPlan") {
			t.Errorf("got plan\n%s\nwant no InitPlan or SubPlan", plan)
		}
		return nil
	})
}

// appSetConfig matches a set_config of one of tenantd's app.* settings.
var appSetConfig = regexp.MustCompile(`(?i)set_config\s*\(\s*'app\.`)

// TestNoSetConfigOfAppSettings proves that nothing the service runs binds
// a tenant or the platform with set_config: neither the Go sources (tests
// aside) nor the SQL functions of the migrations. Citus never forwards a
// set_config to the workers, where the policies are evaluated, so a tenant
// bound that way reads nothing there, and the SECURITY DEFINER functions'
// scope is open (docs/citus/README.md section 1); app_bind_tenant and
// app_bind_platform are the only bindings.
func TestNoSetConfigOfAppSettings(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "vendor" || name == "node_modules" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		goSource := strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go")
		migration := filepath.Dir(rel) == "migrations" && strings.HasSuffix(rel, ".sql")
		if !goSource && !migration {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for i, line := range strings.Split(string(src), "\n") {
			if appSetConfig.MatchString(line) {
				t.Errorf("%s:%d: %s\nwant app_bind_tenant or app_bind_platform instead", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked %d files, want the module's Go sources and migrations (is the root %s?)", checked, root)
	}
	if !appSetConfig.MatchString("SELECT set_config('app.tenant_id', $1, true)") {
		t.Fatal("the pattern misses the set_config it is for")
	}
}
