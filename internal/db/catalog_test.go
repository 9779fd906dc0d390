package db_test

import (
	"database/sql"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// tenantSetting matches a policy expression that reads the request's tenant.
var tenantSetting = regexp.MustCompile(`current_setting\('app\.tenant_id'`)

// sharedTables are the tables without tenant_id that tenantd_app may touch:
// platform data, the same for every tenant. A new table the runtime role can
// reach must either carry tenant_id (and its policy) or be listed here.
// casbin_rule holds RBAC policies keyed by domain = tenant id; the Casbin
// adapter loads it outside tenant transactions (see docs/security.md).
var sharedTables = []string{"billing_exports", "billing_periods", "casbin_rule", "event_checkpoints", "plan_meters", "plans",
	"schema_migrations", "sim_gateway_charges", "sim_gateway_refunds", "tenants", "usage_flushes"}

// securityDefiners are the SECURITY DEFINER functions tenantd_app may call;
// each runs as the owner and so sees past row-level security.
var securityDefiners = []string{"audit_unsealed(bigint,integer,uuid[])", "auth_api_key_lookup(text)", "auth_oidc_tenants(text)",
	"billing_active_products()", "billing_close_period(text)", "billing_export_rows(text,boolean)",
	"billing_export_tenants(text,boolean)", "billing_usage_page(text,uuid,integer)",
	"idempotency_sweep()", "events_dispatch_batch(bigint,bigint,integer,text[])", "orders_expired(timestamp with time zone,integer)",
	"payments_unsettled(timestamp with time zone,integer)", "refunds_due(timestamp with time zone,integer)"}

// tenantTables lists every table in the public schema with a tenant_id
// column, so a table added by a later migration is covered without edits.
func tenantTables(t testing.TB, d *db.DB) []string {
	t.Helper()
	var names []string
	err := d.Unscoped(t.Context()).Raw(`
		SELECT c.relname
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
		  AND a.attname = 'tenant_id' AND NOT a.attisdropped
		ORDER BY 1`).Scan(&names).Error
	if err != nil {
		t.Fatalf("list tenant tables: %v", err)
	}
	if len(names) == 0 {
		t.Fatal("got no table with a tenant_id column, want at least api_keys and products")
	}
	return names
}

type policy struct {
	Name         string
	Cmd          string
	Permissive   bool
	AppliesToApp bool
	Qual         sql.NullString
	WithCheck    sql.NullString
}

func (p policy) String() string {
	return p.Name + " (" + p.Cmd + ") USING " + p.Qual.String + " WITH CHECK " + p.WithCheck.String
}

// policiesOf returns table's policies; AppliesToApp is true when the policy
// applies to tenantd_app (directly, through PUBLIC or through membership).
func policiesOf(t testing.TB, d *db.DB, table string) []policy {
	t.Helper()
	var ps []policy
	err := d.Unscoped(t.Context()).Raw(`
		SELECT p.policyname AS name, p.cmd,
		       p.permissive = 'PERMISSIVE' AS permissive,
		       EXISTS (SELECT 1 FROM unnest(p.roles) r
		               WHERE r = 'public' OR pg_has_role('tenantd_app', r, 'MEMBER')) AS applies_to_app,
		       p.qual, p.with_check
		FROM pg_policies p
		WHERE p.schemaname = 'public' AND p.tablename = ?
		ORDER BY p.policyname`, table).Scan(&ps).Error
	if err != nil {
		t.Fatalf("policies of %s: %v", table, err)
	}
	return ps
}

func checkRLSForced(t *testing.T, d *db.DB, table string) {
	t.Helper()
	var flags struct{ Enabled, Forced bool }
	err := d.Unscoped(t.Context()).Raw(`
		SELECT c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relname = ?`, table).Scan(&flags).Error
	if err != nil {
		t.Fatalf("read RLS flags of %s: %v", table, err)
	}
	if !flags.Enabled {
		t.Errorf("%s: got relrowsecurity false, want true (ENABLE ROW LEVEL SECURITY)", table)
	}
	if !flags.Forced {
		t.Errorf("%s: got relforcerowsecurity false, want true (FORCE ROW LEVEL SECURITY)", table)
	}
}

// refersTenant reports whether a policy expression is present and reads
// app.tenant_id.
func refersTenant(e sql.NullString) bool { return e.Valid && tenantSetting.MatchString(e.String) }

// TestRLSCatalog proves from the catalog that every tenant table, present or
// added later, has row-level security enabled and forced and a policy keyed
// on app.tenant_id, and that no policy admits the runtime role otherwise.
func TestRLSCatalog(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 2)

	tables := tenantTables(t, app)
	for _, want := range []string{"api_keys", "products"} {
		if !slices.Contains(tables, want) {
			t.Errorf("got tenant tables %v, want them to include %s", tables, want)
		}
	}
	for _, table := range tables {
		t.Run(table, func(t *testing.T) {
			checkRLSForced(t, app, table)
			ps := policiesOf(t, app, table)
			if len(ps) == 0 {
				t.Fatalf("%s: got no policy, want one on app.tenant_id", table)
			}
			isolating := false
			for _, p := range ps {
				if p.Cmd == "ALL" && p.Permissive && p.AppliesToApp &&
					refersTenant(p.Qual) && refersTenant(p.WithCheck) &&
					strings.Contains(p.Qual.String, "tenant_id") && strings.Contains(p.WithCheck.String, "tenant_id") {
					isolating = true
				}
				// Permissive policies are OR-ed: one that admits the runtime
				// role without the tenant opens every tenant's rows.
				if !p.Permissive || !p.AppliesToApp {
					continue
				}
				if (p.Qual.Valid && !refersTenant(p.Qual)) || (p.WithCheck.Valid && !refersTenant(p.WithCheck)) ||
					(!p.Qual.Valid && !p.WithCheck.Valid) {
					t.Errorf("%s: policy %s admits tenantd_app without app.tenant_id, want every permissive policy to check it", table, p)
				}
			}
			if !isolating {
				t.Errorf("%s: got policies %v, want a FOR ALL policy whose USING and WITH CHECK compare tenant_id with current_setting('app.tenant_id')", table, ps)
			}
		})
	}

	t.Run("tenants", func(t *testing.T) {
		checkRLSForced(t, app, "tenants")
		ps := policiesOf(t, app, "tenants")
		self := false
		for _, p := range ps {
			if p.Cmd == "ALL" && p.AppliesToApp && refersTenant(p.Qual) && refersTenant(p.WithCheck) &&
				strings.Contains(p.Qual.String, "id = ") && strings.Contains(p.WithCheck.String, "id = ") {
				self = true
			}
			if !p.Permissive || !p.AppliesToApp {
				continue
			}
			for _, e := range []sql.NullString{p.Qual, p.WithCheck} {
				if e.Valid && !tenantSetting.MatchString(e.String) && !strings.Contains(e.String, "current_setting('app.platform'") {
					t.Errorf("tenants: policy %s admits tenantd_app without app.tenant_id or app.platform", p)
				}
			}
		}
		if !self {
			t.Errorf("tenants: got policies %v, want a FOR ALL policy comparing id with current_setting('app.tenant_id')", ps)
		}
	})
}

// TestRuntimeRoleReach proves from the catalog that the runtime role reaches
// no table, view or owner-privileged function that row-level security does
// not guard, except the listed shared tables and SECURITY DEFINER functions.
func TestRuntimeRoleReach(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 2)
	ctx := t.Context()

	t.Run("tables without tenant_id", func(t *testing.T) {
		var names []string
		err := app.Unscoped(ctx).Raw(`
			SELECT c.relname
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
			  AND has_table_privilege('tenantd_app', c.oid, 'SELECT, INSERT, UPDATE, DELETE')
			  AND NOT EXISTS (SELECT 1 FROM pg_attribute a
			                  WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
			ORDER BY 1`).Scan(&names).Error
		if err != nil {
			t.Fatalf("list shared tables: %v", err)
		}
		for _, n := range names {
			if !slices.Contains(sharedTables, n) {
				t.Errorf("table %s is reachable by tenantd_app but has no tenant_id: add tenant_id and its policy, or list it in sharedTables in catalog_test.go", n)
			}
		}
	})

	t.Run("views", func(t *testing.T) {
		var views []struct {
			Name    string
			Kind    string
			Options string
		}
		err := app.Unscoped(ctx).Raw(`
			SELECT c.relname AS name, c.relkind::text AS kind,
			       coalesce(array_to_string(c.reloptions, ','), '') AS options
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm')
			  AND has_table_privilege('tenantd_app', c.oid, 'SELECT')
			ORDER BY 1`).Scan(&views).Error
		if err != nil {
			t.Fatalf("list views: %v", err)
		}
		for _, v := range views {
			// A view runs with its owner's rights unless security_invoker is
			// set; a materialized view has no row-level security at all.
			invoker := false
			for _, o := range strings.Split(v.Options, ",") {
				k, val, _ := strings.Cut(o, "=")
				if k == "security_invoker" && slices.Contains([]string{"true", "on", "1", "yes"}, strings.ToLower(val)) {
					invoker = true
				}
			}
			if v.Kind == "m" || !invoker {
				t.Errorf("view %s (relkind %s, options %q) is readable by tenantd_app and bypasses row-level security, want a view WITH (security_invoker = true)", v.Name, v.Kind, v.Options)
			}
		}
	})

	t.Run("security definer functions", func(t *testing.T) {
		var fns []string
		err := app.Unscoped(ctx).Raw(`
			SELECT p.oid::regprocedure::text
			FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = 'public' AND p.prosecdef
			  AND has_function_privilege('tenantd_app', p.oid, 'EXECUTE')
			ORDER BY 1`).Scan(&fns).Error
		if err != nil {
			t.Fatalf("list functions: %v", err)
		}
		for _, f := range fns {
			if !slices.Contains(securityDefiners, f) {
				t.Errorf("SECURITY DEFINER function %s is executable by tenantd_app: review it (REVOKE ... FROM PUBLIC) or list it in securityDefiners in catalog_test.go", f)
			}
		}
	})
}
