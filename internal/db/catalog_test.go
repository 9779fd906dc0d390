package db_test

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

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
var sharedTables = []string{"billing_exports", "billing_periods", "casbin_rule", "event_checkpoints", "plan_meters", "plans", "platform_audit_events",
	"schema_migrations", "sim_gateway_charges", "sim_gateway_refunds", "tenant_tombstones", "tenants", "usage_flushes"}

// appDefiners are the SECURITY DEFINER functions tenantd_app may call, and
// workerDefiners those only tenantd_worker may call (migration 0019), each
// with who calls it and what for (docs/security.md, "Functions that see
// past row-level security", has the whole table). Each runs as the owner
// and so sees past row-level security: it must serve only the scope of its
// caller's transaction (TestSecurityDefinersServeTheirScope, which needs a
// probe for each). A function a role can execute must be listed here with
// its reason; a listed one that no longer exists fails too.
var appDefiners = map[string]string{
	"auth_api_key_lookup(text)": "middleware.Authenticate, before the tenant is known: the one API key with an exact prefix",
	"auth_oidc_tenants(text)":   "OIDC sign-in, before the tenant is known: the tenants that registered an exact issuer",
}

// workerDefiners: see appDefiners. tenantd_worker, a member of
// tenantd_app, also executes appDefiners.
var workerDefiners = map[string]string{
	"webhook_deliveries_due(timestamp with time zone,integer,integer)": "the webhook delivery workers: (tenant, delivery) of due deliveries, " +
		"at most so many per endpoint; they claim and record each under RLS",
	"events_dispatch_batch(bigint,bigint,integer,text[])": "the event dispatcher (and its lag metric): events up to its settled horizon, " +
		"to deliver to subscribers that then work in each event's tenant",
	"audit_unsealed(bigint,integer,uuid[])":                "the audit sealer: (tenant, position) of unsealed rows; it seals each tenant's rows under RLS",
	"idempotency_sweep()":                                  "the idempotency sweeper: deletes expired keys, returns how many",
	"orders_expired(timestamp with time zone,integer)":     "the order sweeper: (tenant, order) of pending orders past their reservation",
	"payments_unsettled(timestamp with time zone,integer)": "the payments reconciler: (tenant, payment) still processing",
	"refunds_due(timestamp with time zone,integer)":        "the payments reconciler: (tenant, refund) pending and due",
	"billing_active_products()":                            "metering: product counts per tenant for the active_products gauge",
	"billing_close_period(text)":                           "billing exports (operator): freezes an ended period's lines for every tenant",
	"billing_export_rows(text,boolean)":                    "billing exports (operator, CLI): the invoice lines of a period",
	"billing_export_tenants(text,boolean)":                 "billing exports (operator, CLI): how many tenants an export covers",
	"billing_usage_page(text,uuid,integer)":                "GET /admin/v1/usage (operator): a page of tenants with their usage",
	"dead_letters_page(text,uuid,uuid,integer)":            "GET /admin/v1/dead-letters (operator): a page of dead letters, without their events' data",
	"dead_letter_tenant(uuid)":                             "the operator's dead-letter routes by id: the tenant whose transaction reads, replays or discards it",
	"tenant_exports_due(timestamp with time zone,integer)": "the export workers (gdpr): (tenant, export) of pending exports and of running ones whose lease expired; " +
		"they claim and build each under RLS",
	"tenant_erase(text,regclass[],bigint,timestamp with time zone)": "tenant erasure (operator, gdpr): erases the transaction's tenant, " +
		"only while it is suspended and confirmed by its slug (its rows, its rules, its tenants row), writes its tombstone, " +
		"returns the receipt; refuses without a tenant",
}

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
		for _, tt := range []struct {
			role   string
			listed map[string]string
		}{
			{"tenantd_app", appDefiners},
			{"tenantd_worker", mergeMaps(appDefiners, workerDefiners)},
		} {
			fns := definersOf(t, app, tt.role)
			for _, f := range fns {
				if reason := tt.listed[f]; strings.TrimSpace(reason) == "" {
					t.Errorf("SECURITY DEFINER function %s is executable by %s: review it (REVOKE ... FROM PUBLIC), or confine it to its caller's scope and list it with its reason in appDefiners or workerDefiners in catalog_test.go and in docs/security.md", f, tt.role)
				}
			}
			for f := range tt.listed {
				if !slices.Contains(fns, f) {
					t.Errorf("%s cannot execute %s (or it no longer exists), which catalog_test.go lists for it", tt.role, f)
				}
			}
		}
		// Each runs as the owner: a search_path the caller chose could
		// make it run the caller's objects with the owner's rights.
		var unpinned []string
		err := app.Unscoped(ctx).Raw(`
			SELECT p.oid::regprocedure::text
			FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = 'public' AND p.prosecdef
			  AND NOT EXISTS (SELECT 1 FROM unnest(coalesce(p.proconfig, '{}')) c WHERE c LIKE 'search_path=%')
			ORDER BY 1`).Scan(&unpinned).Error
		if err != nil {
			t.Fatalf("list functions without search_path: %v", err)
		}
		if len(unpinned) > 0 {
			t.Errorf("SECURITY DEFINER functions %v have no SET search_path, want it pinned (pg_catalog, public)", unpinned)
		}
	})
}

// definersOf lists the SECURITY DEFINER functions role may execute.
func definersOf(t *testing.T, d *db.DB, role string) []string {
	t.Helper()
	var fns []string
	if err := d.Unscoped(t.Context()).Raw(`
		SELECT p.oid::regprocedure::text
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'public' AND p.prosecdef
		  AND has_function_privilege(?, p.oid, 'EXECUTE')
		ORDER BY 1`, role).Scan(&fns).Error; err != nil {
		t.Fatalf("list functions %s may execute: %v", role, err)
	}
	return fns
}

func mergeMaps(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// definerFixture is what TestSecurityDefinersServeTheirScope puts in two
// tenants so that every SECURITY DEFINER function has rows of both to
// return: keys, an issuer registration, events, unsealed audit rows, an
// expired idempotency key, an expired pending order, a product, a payment
// still processing and a pending refund.
type definerFixture struct {
	a, b      uuid.UUID
	slugB     string   // b's slug, which tenant_erase wants confirmed
	prefixes  []string // one API key prefix per tenant
	issuer    string   // registered by both, with different audiences
	eventType string   // the type of one event per tenant
	period    string   // the current billing period
	// deadLetters holds one dead letter per tenant (of subscriber
	// catalog_test), on that tenant's event.
	deadLetters []uuid.UUID
}

// errRollback ends a probe's transaction without committing it.
var errRollback = errors.New("rolled back")

// probeResult is what a function served in one scope: the tenant of each
// row, or, for a function that returns a count, that count.
type probeResult struct {
	tenants []string
	count   int64
}

// definerProbes call each SECURITY DEFINER function the runtime role may
// execute so that, without confinement, it returns rows of both fixture
// tenants. Every function of appDefiners and workerDefiners needs one.
var definerProbes = map[string]func(tx *gorm.DB, f definerFixture) (probeResult, error){
	"auth_api_key_lookup(text)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT tenant_id::text FROM auth_api_key_lookup(?)
			UNION ALL SELECT tenant_id::text FROM auth_api_key_lookup(?)`, f.prefixes[0], f.prefixes[1])
	},
	"auth_oidc_tenants(text)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT tenant_id::text FROM auth_oidc_tenants(?)`, f.issuer)
	},
	"events_dispatch_batch(bigint,bigint,integer,text[])": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT tenant_id::text FROM events_dispatch_batch(0, 9223372036854775807, 1000, ARRAY[?])`, f.eventType)
	},
	"audit_unsealed(bigint,integer,uuid[])": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT DISTINCT tenant_id::text FROM audit_unsealed(9223372036854775807, 10000, NULL)
			WHERE tenant_id IN (?, ?)`, f.a, f.b)
	},
	"idempotency_sweep()": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return countOf(tx, `SELECT idempotency_sweep()`)
	},
	"orders_expired(timestamp with time zone,integer)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT tenant_id::text FROM orders_expired(now() + interval '1 hour', 100000) WHERE tenant_id IN (?, ?)`, f.a, f.b)
	},
	"payments_unsettled(timestamp with time zone,integer)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT tenant_id::text FROM payments_unsettled(now() + interval '1 hour', 100000) WHERE tenant_id IN (?, ?)`, f.a, f.b)
	},
	"refunds_due(timestamp with time zone,integer)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT tenant_id::text FROM refunds_due(now() + interval '1 hour', 100000) WHERE tenant_id IN (?, ?)`, f.a, f.b)
	},
	"billing_active_products()": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT tenant_id::text FROM billing_active_products() WHERE tenant_id IN (?, ?)`, f.a, f.b)
	},
	// The current period is still open: closing it answers 'open' and
	// writes nothing. Only the refusal in a scope is at stake.
	"billing_close_period(text)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		var state string
		err := tx.Raw(`SELECT billing_close_period(?)`, f.period).Scan(&state).Error
		return probeResult{}, err
	},
	"billing_export_rows(text,boolean)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT DISTINCT tenant_id::text FROM billing_export_rows(?, false) WHERE tenant_id IN (?, ?)`, f.period, f.a, f.b)
	},
	"billing_export_tenants(text,boolean)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return countOf(tx, `SELECT billing_export_tenants(?, false)`, f.period)
	},
	"webhook_deliveries_due(timestamp with time zone,integer,integer)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT DISTINCT tenant_id::text FROM webhook_deliveries_due(now() + interval '1 hour', 1000, 1000)
			WHERE tenant_id IN (?, ?)`, f.a, f.b)
	},
	"billing_usage_page(text,uuid,integer)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT DISTINCT tenant_id::text FROM billing_usage_page(?, NULL, 1000) WHERE tenant_id IN (?, ?)`, f.period, f.a, f.b)
	},
	"dead_letters_page(text,uuid,uuid,integer)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT DISTINCT tenant_id::text FROM dead_letters_page('catalog_test', NULL, NULL, 1000) WHERE tenant_id IN (?, ?)`, f.a, f.b)
	},
	"tenant_exports_due(timestamp with time zone,integer)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT DISTINCT tenant_id::text FROM tenant_exports_due(now() + interval '1 hour', 100)
			WHERE tenant_id IN (?, ?)`, f.a, f.b)
	},
	// The whole erasure acts only on a suspended tenant: B is suspended
	// while this probe runs (suspendDuring), in a transaction of its own
	// as gdpr suspends before it erases; the probe's transaction is rolled
	// back. It returns the receipt, whose count of api_keys is the probe's
	// (the rest cascades from the tenants row).
	"tenant_erase(text,regclass[],bigint,timestamp with time zone)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return countOf(tx, `SELECT (tenant_erase(?, ARRAY['api_keys']::regclass[], 0, now())::json -> 'tables' ->> 'api_keys')::bigint`, f.slugB)
	},
	"dead_letter_tenant(uuid)": func(tx *gorm.DB, f definerFixture) (probeResult, error) {
		return rowsOf(tx, `SELECT t::text FROM (SELECT dead_letter_tenant(?) AS t UNION ALL SELECT dead_letter_tenant(?)) x WHERE t IS NOT NULL`,
			f.deadLetters[0], f.deadLetters[1])
	},
}

func rowsOf(tx *gorm.DB, query string, args ...any) (probeResult, error) {
	var ids []string
	err := tx.Raw(query, args...).Scan(&ids).Error
	slices.Sort(ids)
	return probeResult{tenants: ids, count: int64(len(ids))}, err
}

func countOf(tx *gorm.DB, query string, args ...any) (probeResult, error) {
	var n int64
	err := tx.Raw(query, args...).Scan(&n).Error
	return probeResult{count: n}, err
}

// newDefinerFixture puts the rows of definerFixture in two new tenants.
func newDefinerFixture(t *testing.T, owner *db.DB) definerFixture {
	t.Helper()
	ctx := t.Context()
	b := testenv.NewTenant(t)
	f := definerFixture{a: testenv.NewTenant(t).ID, b: b.ID, slugB: b.Slug,
		issuer:    "https://idp-" + testenv.RandomHex(6) + ".example",
		eventType: "definer.probe." + testenv.RandomHex(6)}
	if err := owner.Unscoped(ctx).Raw(`SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')`).Scan(&f.period).Error; err != nil {
		t.Fatal(err)
	}
	for _, id := range []uuid.UUID{f.a, f.b} {
		eventID, deadLetter := uuid.New(), uuid.New()
		f.deadLetters = append(f.deadLetters, deadLetter)
		prefix := "dp" + testenv.RandomHex(7)
		f.prefixes = append(f.prefixes, prefix)
		err := owner.WithPlatform(ctx, func(tx *gorm.DB) error {
			return tx.Exec(`UPDATE tenants SET settings = jsonb_build_object('oidc', jsonb_build_object('issuer', ?::text, 'audience', ?::text))
				WHERE id = ?`, f.issuer, "aud-"+id.String(), id).Error
		})
		if err != nil {
			t.Fatalf("register issuer: %v", err)
		}
		err = owner.WithTenant(ctx, id, func(tx *gorm.DB) error {
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`INSERT INTO api_keys (tenant_id, id, name, prefix, secret_hash, roles, created_by)
					VALUES (?, ?, 'definer', ?, ?, ARRAY['admin'], 'catalog_test')`, []any{id, uuid.New(), prefix, []byte("hash")}},
				{`INSERT INTO events (tenant_id, id, stream_id, version, type, data)
					VALUES (?, ?, ?, 1, ?, '{}')`, []any{id, eventID, "dp-" + testenv.RandomHex(4), f.eventType}},
				{`INSERT INTO dead_letters (tenant_id, id, subscriber, event_id, position, error, attempts)
					SELECT tenant_id, ?, 'catalog_test', id, position, 'probe', 1 FROM events WHERE tenant_id = ? AND id = ?`,
					[]any{deadLetter, id, eventID}},
				{`INSERT INTO audit_events (tenant_id, id, occurred_at, actor, action, resource, status)
					VALUES (?, ?, now(), 'catalog_test', 'definer.probe', 'probe', 0)`, []any{id, uuid.New()}},
				{`INSERT INTO idempotency_keys (tenant_id, credential, key, request_hash, created_at, expires_at)
					VALUES (?, 'api_key:catalog_test', ?, ?, now() - interval '2 hours', now() - interval '1 hour')`, []any{id, "dp-" + testenv.RandomHex(8), make([]byte, 32)}},
				{`INSERT INTO order_views (tenant_id, id, customer_id, status, items, total, currency,
					reservation_expires_at, version, created_at, updated_at)
					VALUES (?, ?, 'c-1', 'pending', '[]', 0, 'EUR', now(), 1, now(), now())`, []any{id, uuid.New()}},
				{`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
					VALUES (?, ?, ?, 'Definer', 100, 'EUR', 5)`, []any{id, uuid.New(), "DP-" + testenv.RandomHex(4)}},
				{`INSERT INTO payments (tenant_id, id, order_id, status, amount, currency, payment_method)
					VALUES (?, ?, ?, 'processing', 100, 'EUR', 'card')`, []any{id, uuid.New(), uuid.New()}},
			} {
				if err := tx.Exec(q.sql, q.args...).Error; err != nil {
					return err
				}
			}
			if err := tenantFixtures["webhook_deliveries"](tx, id); err != nil { // a webhook delivery, due now
				return err
			}
			if err := tenantFixtures["tenant_exports"](tx, id); err != nil { // a pending export
				return err
			}
			return tenantFixtures["refunds"](tx, id) // a pending refund, due now
		})
		if err != nil {
			t.Fatalf("fixture of %s: %v", id, err)
		}
	}
	return f
}

// TestSecurityDefinersServeTheirScope (finding L6): every SECURITY DEFINER
// function the runtime role may execute serves the scope of the
// transaction that calls it. In tenant B's transaction it returns B's rows
// and nothing of A (billing_close_period, which acts for every tenant,
// refuses); with an unknown tenant or in the platform scope it returns
// nothing (or refuses). Without a scope it is the background workers' and
// the pre-tenant lookups' reach, and returns both tenants' rows. Before
// migration 0018 every scope got both tenants' rows, events_dispatch_batch
// every tenant's events.
func TestSecurityDefinersServeTheirScope(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	owner := env.OpenOwnerDB(t)
	// The worker's pool: it executes every one of them (the runtime role
	// only the two lookups, TestRuntimeRoleCannotRunWorkerFunctions).
	app := env.OpenDB(t, 4).Worker()
	ctx := t.Context()
	f := newDefinerFixture(t, owner)
	both := []string{f.a.String(), f.b.String()}
	slices.Sort(both)

	fns := definersOf(t, app, "tenantd_worker")
	scopes := []struct {
		name string
		run  func(fn func(tx *gorm.DB) error) error
	}{
		{"tenant B", func(fn func(tx *gorm.DB) error) error { return app.WithTenant(ctx, f.b, fn) }},
		{"unknown tenant", func(fn func(tx *gorm.DB) error) error { return app.WithTenant(ctx, uuid.New(), fn) }},
		{"platform", func(fn func(tx *gorm.DB) error) error { return app.WithPlatform(ctx, fn) }},
		{"no scope (workers)", func(fn func(tx *gorm.DB) error) error { return app.Unscoped(ctx).Transaction(fn) }},
	}
	for _, fn := range fns {
		t.Run(fn, func(t *testing.T) {
			probe, ok := definerProbes[fn]
			if !ok {
				t.Fatalf("no probe for %s in definerProbes (catalog_test.go): add one that would return rows of both fixture tenants", fn)
			}
			refusesInScope := fn == "billing_close_period(text)"
			counts := fn == "idempotency_sweep()" || fn == "billing_export_tenants(text,boolean)"
			// tenant_erase acts only in a (suspended) tenant's own
			// transaction: everywhere else it refuses.
			erases := fn == "tenant_erase(text,regclass[],bigint,timestamp with time zone)"
			if erases {
				suspendDuring(t, owner, f.b)
			}
			for _, sc := range scopes {
				t.Run(sc.name, func(t *testing.T) {
					var got probeResult
					var callErr error
					err := sc.run(func(tx *gorm.DB) error {
						got, callErr = probe(tx, f)
						return errRollback // a sweep deletes: leave everything as it was
					})
					if !errors.Is(err, errRollback) && callErr == nil {
						t.Fatalf("transaction: %v", err)
					}
					worker := sc.name == "no scope (workers)"
					switch {
					case erases && sc.name == "tenant B":
						if callErr != nil || got.count != 1 {
							t.Errorf("got %d rows erased, %v; want B's one api key", got.count, callErr)
						}
					case erases && sc.name == "unknown tenant" && strings.HasPrefix(fn, "tenant_erase("):
						wantSQLState(t, callErr, "P0002") // no such tenant: gdpr.ErrNotFound
					case erases:
						wantSQLState(t, callErr, "42501")
					case refusesInScope && !worker:
						wantSQLState(t, callErr, "42501")
					case callErr != nil:
						t.Fatalf("got %v, want an answer", callErr)
					case worker && counts:
						if got.count < 2 {
							t.Errorf("got %d, want at least both tenants' 2", got.count)
						}
					case worker && !refusesInScope:
						if !slices.Equal(got.tenants, both) {
							t.Errorf("got rows of %v, want both tenants' %v (the workers' reach)", got.tenants, both)
						}
					case sc.name == "tenant B" && counts:
						if got.count != 1 {
							t.Errorf("got %d, want 1 (B's own)", got.count)
						}
					case sc.name == "tenant B":
						if want := []string{f.b.String()}; !slices.Equal(got.tenants, want) {
							t.Errorf("got rows of %v, want B's only %v", got.tenants, want)
						}
					default:
						if got.count != 0 {
							t.Errorf("got %d rows of %v, want none", got.count, got.tenants)
						}
					}
				})
			}
		})
	}
}

// suspendDuring suspends tenant id, committed in a platform transaction
// of its own, until t ends, then gives it back its status. Suspending in
// the probe's transaction instead would have the runtime role lock the
// tenants row and the owner (tenant_erase) write a table referencing
// it over other connections of the same transaction: on Citus, where
// tenants and api_keys are reference tables, that is a distributed
// deadlock (40P01).
func suspendDuring(t *testing.T, owner *db.DB, id uuid.UUID) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	var status string
	err := owner.WithPlatform(ctx, func(tx *gorm.DB) error {
		if err := tx.Raw(`SELECT status FROM tenants WHERE id = ?`, id).Scan(&status).Error; err != nil {
			return err
		}
		return tx.Exec(`UPDATE tenants SET status = 'suspended' WHERE id = ?`, id).Error
	})
	if err != nil {
		t.Fatalf("suspend %s: %v", id, err)
	}
	t.Cleanup(func() {
		err := owner.WithPlatform(ctx, func(tx *gorm.DB) error {
			return tx.Exec(`UPDATE tenants SET status = ? WHERE id = ?`, status, id).Error
		})
		if err != nil {
			t.Errorf("give %s back its status %s: %v", id, status, err)
		}
	})
}

// TestRuntimeRoleCannotRunWorkerFunctions (finding L6): the role every
// request runs as cannot execute the workers' SECURITY DEFINER functions,
// in any scope: without a tenant set they would read every tenant's rows.
// Before migration 0019 tenantd_app could execute all of them.
func TestRuntimeRoleCannotRunWorkerFunctions(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	owner := env.OpenOwnerDB(t)
	app := env.OpenDB(t, 2)
	ctx := t.Context()
	f := newDefinerFixture(t, owner)
	if len(workerDefiners) == 0 {
		t.Fatal("workerDefiners is empty")
	}
	for fn := range workerDefiners {
		t.Run(fn, func(t *testing.T) {
			probe, ok := definerProbes[fn]
			if !ok {
				t.Fatalf("no probe for %s in definerProbes", fn)
			}
			for name, run := range map[string]func(fn func(tx *gorm.DB) error) error{
				"no scope":   func(fn func(tx *gorm.DB) error) error { return app.Unscoped(ctx).Transaction(fn) },
				"a tenant's": func(fn func(tx *gorm.DB) error) error { return app.WithTenant(ctx, f.a, fn) },
			} {
				var callErr error
				err := run(func(tx *gorm.DB) error {
					_, callErr = probe(tx, f)
					return errRollback
				})
				if !errors.Is(err, errRollback) && callErr == nil {
					t.Fatalf("%s transaction: %v", name, err)
				}
				t.Run(name, func(t *testing.T) { wantSQLState(t, callErr, "42501") })
			}
		})
	}
}

// TestCasbinRuleDomains (finding L6): the runtime role reads every
// tenant's rules (the adapter loads them outside tenant transactions) but
// writes rules only in the domain of its transaction's tenant: none
// without a tenant, none into another tenant's domain, and it cannot move
// or remove another tenant's rules.
func TestCasbinRuleDomains(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 2)
	ctx := t.Context()
	a, b := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	role := "r" + testenv.RandomHex(6)
	insert := func(tx *gorm.DB, domain uuid.UUID, name string) error {
		return tx.Exec(`INSERT INTO casbin_rule (ptype, v0, v1, v2, v3) VALUES ('p', ?, ?, 'orders', 'read')`, name, domain.String()).Error
	}
	rulesOf := func(t *testing.T, tx *gorm.DB, domain uuid.UUID) []string {
		t.Helper()
		var names []string
		if err := tx.Raw(`SELECT v0 FROM casbin_rule WHERE v1 = ? ORDER BY v0`, domain.String()).Scan(&names).Error; err != nil {
			t.Fatal(err)
		}
		return names
	}
	if err := app.WithTenant(ctx, a, func(tx *gorm.DB) error { return insert(tx, a, role) }); err != nil {
		t.Fatalf("A writes its own rule: %v", err)
	}

	t.Run("no tenant: insert refused", func(t *testing.T) {
		wantSQLState(t, insert(app.Unscoped(ctx), a, role+"-x"), "42501")
	})
	t.Run("platform scope: insert refused", func(t *testing.T) {
		wantSQLState(t, app.WithPlatform(ctx, func(tx *gorm.DB) error { return insert(tx, a, role+"-x") }), "42501")
	})
	t.Run("into another tenant's domain: refused", func(t *testing.T) {
		wantSQLState(t, app.WithTenant(ctx, b, func(tx *gorm.DB) error { return insert(tx, a, role+"-x") }), "42501")
	})
	t.Run("own domain: allowed", func(t *testing.T) {
		if err := app.WithTenant(ctx, b, func(tx *gorm.DB) error { return insert(tx, b, role) }); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("another tenant's rules cannot be changed or removed", func(t *testing.T) {
		err := app.WithTenant(ctx, b, func(tx *gorm.DB) error {
			if res := tx.Exec(`UPDATE casbin_rule SET v3 = 'write' WHERE v1 = ?`, a.String()); res.Error != nil || res.RowsAffected != 0 {
				t.Errorf("update A's rules: got %d rows, %v; want 0", res.RowsAffected, res.Error)
			}
			if res := tx.Exec(`DELETE FROM casbin_rule WHERE v1 = ?`, a.String()); res.Error != nil || res.RowsAffected != 0 {
				t.Errorf("delete A's rules: got %d rows, %v; want 0", res.RowsAffected, res.Error)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = app.WithTenant(ctx, b, func(tx *gorm.DB) error {
			return tx.Exec(`UPDATE casbin_rule SET v1 = ? WHERE v1 = ?`, a.String(), b.String()).Error
		})
		wantSQLState(t, err, "42501")
		if res := app.Unscoped(ctx).Exec(`DELETE FROM casbin_rule WHERE v1 = ?`, a.String()); res.Error != nil || res.RowsAffected != 0 {
			t.Errorf("delete without a tenant: got %d rows, %v; want 0", res.RowsAffected, res.Error)
		}
	})
	t.Run("reads stay open", func(t *testing.T) {
		if got := rulesOf(t, app.Unscoped(ctx), a); !slices.Equal(got, []string{role}) {
			t.Errorf("A's rules without a tenant: got %v, want [%s]", got, role)
		}
		err := app.WithTenant(ctx, b, func(tx *gorm.DB) error {
			if got := rulesOf(t, tx, a); !slices.Equal(got, []string{role}) {
				t.Errorf("A's rules in B's transaction: got %v, want [%s] (the adapter reads across tenants)", got, role)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
