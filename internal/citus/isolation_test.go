//go:build citus

package citus_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/testenv"
)

// The tables whose rows the seed must have written for the isolation
// checks to prove anything.
var seededTables = []string{"products", "events", "order_views", "reservations", "payments"}

// TestTenantTablesDistributed: every table with a tenant_id column is a
// distributed table (by tenant_id, co-located with products) or a
// reference table; none is left on the coordinator alone.
func TestTenantTablesDistributed(t *testing.T) {
	admin := connect(t, testenv.Get(t).AdminDBURL())
	rows, err := admin.Query(t.Context(), `
		SELECT c.relname, coalesce(ct.citus_table_type, 'local'), coalesce(ct.distribution_column, ''),
			coalesce(ct.colocation_id = (SELECT colocation_id FROM citus_tables WHERE table_name = 'products'::regclass), false)
		FROM pg_class c
		JOIN pg_namespace ns ON ns.oid = c.relnamespace AND ns.nspname = 'public'
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		LEFT JOIN citus_tables ct ON ct.table_name = c.oid
		WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
		ORDER BY 1`)
	if err != nil {
		t.Fatalf("tables: %v", err)
	}
	n := 0
	for rows.Next() {
		var name, kind, column string
		var colocated bool
		if err := rows.Scan(&name, &kind, &column, &colocated); err != nil {
			t.Fatalf("tables: %v", err)
		}
		n++
		switch {
		case kind == "distributed" && (column != "tenant_id" || !colocated):
			t.Errorf("%s: distributed by %q, co-located with products %v; want by tenant_id, co-located", name, column, colocated)
		case kind != "distributed" && kind != "reference":
			t.Errorf("%s has a tenant_id column but is a %s table: neither distributed nor a reference table", name, kind)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("tables: %v", err)
	}
	if n < 10 {
		t.Fatalf("found %d tables with a tenant_id column; the schema has more", n)
	}
}

// TestIsolationOnWorkers connects straight to every worker as the runtime
// role, the way nothing in tenantd does but an attacker with its
// credentials could: with no tenant bound it sees no row of any
// distributed table or shard, bound to a tenant it sees exactly that
// tenant's rows, shard by shard.
func TestIsolationOnWorkers(t *testing.T) {
	env := testenv.Get(t)
	a, b := seedTwoTenants(t)
	admin := connect(t, env.AdminDBURL())
	_, workers := clusterNodes(t, admin)
	tables := distributedTables(t, admin)
	placements := shards(t, admin)
	seeded := map[string]map[string]int64{} // table -> tenant -> rows, every shard
	for _, w := range workers {
		t.Run(w.String(), func(t *testing.T) {
			su := connect(t, w.url(t, env.AdminDBURL()))
			app := connect(t, w.url(t, env.AppURL))
			var mine int
			for _, s := range placements {
				if s.Node != w {
					continue
				}
				mine++
				truth, err := countByTenant(t.Context(), su, s.Name, s.Column)
				if err != nil {
					t.Fatalf("as the superuser: %v", err)
				}
				for tenant, n := range truth {
					if seeded[s.Table] == nil {
						seeded[s.Table] = map[string]int64{}
					}
					seeded[s.Table][tenant] += n
				}
				checkShardAsApp(t, app, s, truth, a.tenant.ID, b.tenant.ID)
			}
			if mine == 0 {
				t.Fatalf("no shard placed on %s", w)
			}
			for _, tb := range tables {
				var n int64
				if err := app.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{tb.Name}.Sanitize()).Scan(&n); err != nil {
					t.Fatalf("%s through the worker, no tenant bound: %v", tb.Name, err)
				}
				if n != 0 {
					t.Errorf("%s through the worker, no tenant bound: %d rows, want 0", tb.Name, n)
				}
			}
			t.Logf("%d shards of %d distributed tables checked", mine, len(tables))
		})
	}
	for _, table := range seededTables {
		for _, sh := range []shop{a, b} {
			if seeded[table][sh.tenant.ID] == 0 {
				t.Errorf("%s holds no row of tenant %s on any worker: the seed did not reach it, so its isolation is unproven", table, sh.tenant.Slug)
			}
		}
	}
}

// checkShardAsApp checks one shard through the runtime role's direct
// connection to its worker: no rows unbound; bound to each tenant, exactly
// that tenant's rows (truth is the superuser's count per tenant).
func checkShardAsApp(t *testing.T, app *pgx.Conn, s shard, truth map[string]int64, tenants ...string) {
	t.Helper()
	var n int64
	if err := app.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{s.Name}.Sanitize()).Scan(&n); err != nil {
		t.Fatalf("shard %s, no tenant bound: %v", s.Name, err)
	}
	if n != 0 {
		t.Errorf("shard %s (%s), no tenant bound: %d rows, want 0", s.Name, s.Table, n)
	}
	for _, tenant := range tenants {
		got, err := countBound(t.Context(), app, tenant, s)
		if err != nil {
			t.Fatalf("shard %s bound to %s: %v", s.Name, tenant, err)
		}
		want := map[string]int64{}
		if truth[tenant] > 0 {
			want[tenant] = truth[tenant]
		}
		if !maps.Equal(got, want) {
			t.Errorf("shard %s (%s) bound to %s: rows per tenant %v, want %v (of %v)", s.Name, s.Table, tenant, got, want, slices.Sorted(maps.Keys(truth)))
		}
	}
}

// countBound counts a shard's rows per tenant in a transaction bound to
// tenant the way tenantd binds (app_bind_tenant), on the worker itself.
func countBound(ctx context.Context, conn *pgx.Conn, tenant string, s shard) (map[string]int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only; the rollback's error changes nothing
	if _, err := tx.Exec(ctx, "SELECT app_bind_tenant($1::uuid)", tenant); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	return countByTenant(ctx, tx, s.Name, s.Column)
}

// TestRuntimeRolesOnEveryNode: on the coordinator and on every worker,
// tenantd_app and tenantd_worker are neither superusers nor BYPASSRLS,
// belong to no role that is (nor to the owner), own nothing, cannot give
// themselves BYPASSRLS, cannot turn row security off for a query, and
// cannot disable or unforce RLS on any table or shard of the node, every
// one of which has RLS enabled and forced.
func TestRuntimeRolesOnEveryNode(t *testing.T) {
	env := testenv.Get(t)
	admin := connect(t, env.AdminDBURL())
	coordinator, workers := clusterNodes(t, admin)
	placements := shards(t, admin)
	tables := distributedTables(t, admin)
	for _, n := range append([]node{coordinator}, workers...) {
		t.Run(n.String(), func(t *testing.T) {
			su := connect(t, n.url(t, env.AdminDBURL()))
			app := connect(t, n.url(t, env.AppURL))
			checkRoleAttributes(t, su)
			rels := []string{}
			for _, tb := range tables {
				rels = append(rels, tb.Name)
			}
			for _, s := range placements {
				if s.Node == n {
					rels = append(rels, s.Name)
				}
			}
			checkForcedRLS(t, su, rels)
			checkCannotLiftRLS(t, app, rels)
		})
	}
}

// checkRoleAttributes checks the runtime roles' attributes, memberships and
// ownerships on one node, as the superuser sees them.
func checkRoleAttributes(t *testing.T, su *pgx.Conn) {
	t.Helper()
	for _, role := range []string{"tenantd_app", "tenantd_worker"} {
		var super, bypass bool
		var owned, elevated int
		err := su.QueryRow(t.Context(), `SELECT rolsuper, rolbypassrls,
				(SELECT count(*) FROM pg_class WHERE relowner = r.oid)
				+ (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)
				+ (SELECT count(*) FROM pg_type WHERE typowner = r.oid)
				+ (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)
				+ (SELECT count(*) FROM pg_database WHERE datdba = r.oid),
				(SELECT count(*) FROM pg_roles g WHERE g.oid <> r.oid AND pg_has_role(r.oid, g.oid, 'MEMBER')
					AND (g.rolsuper OR g.rolbypassrls OR g.rolname = 'tenantd_owner' OR g.rolname LIKE 'pg\_%'))
			FROM pg_roles r WHERE rolname = $1`, role).Scan(&super, &bypass, &owned, &elevated)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if super || bypass || owned != 0 || elevated != 0 {
			t.Errorf("%s: superuser %v, BYPASSRLS %v, owns %d objects, member of %d privileged roles; want false, false, 0, 0",
				role, super, bypass, owned, elevated)
		}
	}
}

// checkForcedRLS checks that every relation has row security enabled and
// forced.
func checkForcedRLS(t *testing.T, su *pgx.Conn, rels []string) {
	t.Helper()
	rows, err := su.Query(t.Context(), `SELECT r.name FROM unnest($1::text[]) AS r(name)
		LEFT JOIN pg_class c ON c.oid = to_regclass(r.name)
		WHERE c.oid IS NULL OR NOT (c.relrowsecurity AND c.relforcerowsecurity)`, rels)
	if err != nil {
		t.Fatalf("row security of %d relations: %v", len(rels), err)
	}
	bad, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("row security: %v", err)
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d relations missing or without RLS enabled and forced: %v", len(bad), len(rels), bad)
	}
}

// checkCannotLiftRLS tries, as tenantd_app, every way a table's owner or a
// superuser would get past row security, and wants each refused for lack
// of privilege (42501).
func checkCannotLiftRLS(t *testing.T, app *pgx.Conn, rels []string) {
	t.Helper()
	ctx := t.Context()
	if _, err := app.Exec(ctx, "ALTER ROLE tenantd_app BYPASSRLS"); sqlState(err) != "42501" {
		t.Errorf("ALTER ROLE tenantd_app BYPASSRLS: got %v, want 42501", err)
	}
	if _, err := app.Exec(ctx, "SET row_security = off"); err != nil {
		t.Fatalf("SET row_security = off: %v", err)
	}
	var n int64
	err := app.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{rels[0]}.Sanitize()).Scan(&n)
	if sqlState(err) != "42501" {
		t.Errorf("%s with row_security off: got %d rows, %v; want 42501 (query would be affected by row-level security)", rels[0], n, err)
	}
	if _, err := app.Exec(ctx, "RESET row_security"); err != nil {
		t.Fatalf("RESET row_security: %v", err)
	}
	for _, rel := range rels {
		for _, stmt := range []string{"DISABLE ROW LEVEL SECURITY", "NO FORCE ROW LEVEL SECURITY"} {
			if _, err := app.Exec(ctx, "ALTER TABLE "+pgx.Identifier{rel}.Sanitize()+" "+stmt); sqlState(err) != "42501" {
				t.Errorf("ALTER TABLE %s %s as tenantd_app: got %v, want 42501 (must be owner)", rel, stmt, err)
			}
		}
	}
}
