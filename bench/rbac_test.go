package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	gormadapter "github.com/casbin/gorm-adapter/v3"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
)

// policyLines is the size of the policy in every BenchmarkEnforce setup.
const policyLines = 100_000

// permsPerRole is how many permissions each benchmark role grants.
const permsPerRole = 10

// policyFixture is policyLines Casbin rules spread evenly over tenants:
// each tenant has policyLines/len(tenants) rules, in roles bench-role-<k>
// of permsPerRole permissions, role k granting the permissions (k+j) mod
// len(auth.Permissions) for j < permsPerRole.
type policyFixture struct {
	tenants []uuid.UUID
	roles   int // per tenant
}

func roleName(k int) string { return fmt.Sprintf("bench-role-%d", k) }

// grants reports whether role k has permission index q, by construction.
func grants(k, q int) bool {
	n := len(auth.Permissions)
	return ((q-k)%n+n)%n < permsPerRole
}

// seedPolicy replaces every benchmark rule with a fresh fixture of n
// tenants, written with one INSERT … SELECT.
func seedPolicy(b *testing.B, d *db.DB, n int) policyFixture {
	b.Helper()
	ctx := context.Background()
	perTenant := policyLines / n
	f := policyFixture{tenants: make([]uuid.UUID, n), roles: perTenant / permsPerRole}
	ids := make([]string, n)
	for i := range f.tenants {
		f.tenants[i] = uuid.Must(uuid.NewV7())
		ids[i] = f.tenants[i].String()
	}
	start := time.Now()
	g := d.Unscoped(ctx)
	if err := g.Exec(`DELETE FROM casbin_rule WHERE v0 LIKE 'bench-role-%'`).Error; err != nil {
		b.Fatalf("clear rules: %v", err)
	}
	err := g.Exec(`
		INSERT INTO casbin_rule (ptype, v0, v1, v2, v3)
		SELECT 'p', 'bench-role-' || (i / ?), t.id, split_part(p.perm, ':', 1), split_part(p.perm, ':', 2)
		FROM unnest(?::text[]) AS t(id)
		CROSS JOIN generate_series(0, ? - 1) AS i
		CROSS JOIN LATERAL (SELECT (?::text[])[1 + ((i / ? + i % ?) % ?)] AS perm) AS p`,
		permsPerRole, pgArray(ids), perTenant, pgArray(auth.Permissions), permsPerRole, permsPerRole, len(auth.Permissions)).Error
	if err != nil {
		b.Fatalf("insert rules: %v", err)
	}
	var total int64
	if err := g.Raw(`SELECT count(*) FROM casbin_rule`).Scan(&total).Error; err != nil {
		b.Fatal(err)
	}
	if total != policyLines {
		b.Fatalf("casbin_rule holds %d rules, want %d", total, policyLines)
	}
	b.Logf("seeded %d rules for %d tenants (%d roles each) in %s", total, n, f.roles, time.Since(start).Round(time.Millisecond))
	return f
}

// pgArray is a text[] literal of words that need no quoting; gorm would
// expand a Go slice into a list of parameters.
func pgArray(words []string) string { return "{" + strings.Join(words, ",") + "}" }

// decision is one authorization question and its answer by construction.
type decision struct {
	p    identity.Principal
	perm string
	want bool
	role int // index of the role asked about
}

// decisions returns n questions over random tenants, roles and
// permissions: about half are allowed.
func (f policyFixture) decisions(n int) []decision {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]decision, n)
	for i := range out {
		t := f.tenants[rng.IntN(len(f.tenants))]
		k, q := rng.IntN(f.roles), rng.IntN(len(auth.Permissions))
		out[i] = decision{
			p:    identity.Principal{Kind: identity.KindAPIKey, TenantID: t, Roles: []string{roleName(k)}},
			perm: auth.Permissions[q], want: grants(k, q), role: k,
		}
	}
	return out
}

// tally knows how many of a cycle of decisions are allowed, to check a
// benchmark loop's count of allowed decisions without slowing the loop.
type tally struct {
	prefix []int // prefix[i]: allowed among the first i decisions
}

func newTally(qs []decision) tally {
	t := tally{prefix: make([]int, len(qs)+1)}
	for i, q := range qs {
		t.prefix[i+1] = t.prefix[i]
		if q.want {
			t.prefix[i+1]++
		}
	}
	return t
}

// allowedIn counts the allowed decisions among count of them from start,
// going round the cycle.
func (t tally) allowedIn(start, count int) int {
	n := len(t.prefix) - 1
	upTo := func(k int) int { return k/n*t.prefix[n] + t.prefix[k%n] }
	return upTo(start+count) - upTo(start)
}

func (t tally) check(b *testing.B, start, count, allowed int) {
	if want := t.allowedIn(start, count); allowed != want {
		b.Errorf("%d of %d decisions allowed, want %d", allowed, count, want)
	}
}

// BenchmarkEnforce measures one authorization decision (auth.RBAC.Allowed)
// with policyLines Casbin rules in PostgreSQL spread over 10 and over
// 10,000 tenants, every tenant's policy loaded (warm).
//
//   - baseline: the same decisions answered from a plain Go map built in
//     advance, tenant → role → permission bits;
//   - rbac: a custom role, the tenant's compiled policy cached;
//   - rbac-permissions-map: the same decision through PermissionsOf, which
//     builds the map of every permission the roles grant;
//   - rbac-builtin: a built-in role (no tenant lookup);
//   - rbac-parallel: rbac on every CPU;
//   - tenant-load: reading one tenant's policy through the filtered
//     adapter and compiling it (RBAC.ListRoles), the cost of a cold tenant;
//   - reload-all: RBAC.Reload of every tenant, as every replica does each
//     ReloadInterval (500 tenants per query);
//   - casbin-tenant-enforcer: Casbin's Enforce on an enforcer holding one
//     tenant's rules (policyLines/tenants of them);
//   - casbin-all-rules-enforcer: Casbin's Enforce on one enforcer holding
//     every rule, the design the decision table replaces.
//
// ns/op of rbac divided by ns/op of baseline is reported as x-baseline.
func BenchmarkEnforce(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			benchmarkEnforce(b, n)
		})
	}
}

func benchmarkEnforce(b *testing.B, n int) {
	ctx := context.Background()
	d := testenv.Get(b).OpenDB(b, setupWorkers)
	// The runtime role may write rules only in its transaction's tenant's
	// domain (migration 0018): the fixture, for many tenants at once, is
	// written as the owner.
	f := seedPolicy(b, testenv.Get(b).OpenOwnerDB(b), n)
	r, err := auth.NewRBAC(d, nil, discardLogger(), auth.RBACOptions{ReloadInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	qs := f.decisions(1 << 14)

	start := time.Now()
	if err := parallel(len(f.tenants), func(i int) error {
		_, err := r.PermissionsOf(ctx, f.tenants[i], []string{roleName(0)})
		return err
	}); err != nil {
		b.Fatalf("warm up: %v", err)
	}
	b.Logf("loaded the policy of %d tenants in %s", n, time.Since(start).Round(time.Millisecond))
	for _, q := range qs {
		if got := r.Allowed(ctx, q.p, q.perm); got != q.want {
			b.Fatalf("%v %s: got %v, want %v", q.p.Roles, q.perm, got, q.want)
		}
	}

	// The baseline: the same answers from a map built in advance.
	bitOf := make(map[string]uint64, len(auth.Permissions))
	for i, p := range auth.Permissions {
		bitOf[p] = 1 << i
	}
	table := make(map[uuid.UUID]map[string]uint64, n)
	for _, t := range f.tenants {
		roles := make(map[string]uint64, f.roles)
		for k := range f.roles {
			for q := range auth.Permissions {
				if grants(k, q) {
					roles[roleName(k)] |= 1 << q
				}
			}
		}
		table[t] = roles
	}
	baselineAllowed := func(p identity.Principal, perm string) bool {
		bit := bitOf[perm]
		roles := table[p.TenantID]
		for _, role := range p.Roles {
			if roles[role]&bit != 0 {
				return true
			}
		}
		return false
	}
	for _, q := range qs {
		if got := baselineAllowed(q.p, q.perm); got != q.want {
			b.Fatalf("baseline %v %s: got %v, want %v", q.p.Roles, q.perm, got, q.want)
		}
	}

	mask := len(qs) - 1
	custom := newTally(qs)
	builtin := make([]decision, len(qs))
	clerk := auth.PermissionsOf([]string{"clerk"})
	for i, q := range qs {
		q.p.Roles = []string{"clerk"}
		q.want = clerk[q.perm]
		builtin[i] = q
	}
	builtinTally := newTally(builtin)

	var baselineNs float64
	b.Run("baseline", func(b *testing.B) {
		i, allowed := 0, 0
		for b.Loop() {
			q := &qs[i&mask]
			if baselineAllowed(q.p, q.perm) {
				allowed++
			}
			i++
		}
		custom.check(b, 0, i, allowed)
		baselineNs = float64(b.Elapsed().Nanoseconds()) / float64(i)
	})
	b.Run("rbac", func(b *testing.B) {
		i, allowed := 0, 0
		for b.Loop() {
			q := &qs[i&mask]
			if r.Allowed(ctx, q.p, q.perm) {
				allowed++
			}
			i++
		}
		custom.check(b, 0, i, allowed)
		if baselineNs > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i)/baselineNs, "x-baseline")
		}
	})
	b.Run("rbac-permissions-map", func(b *testing.B) {
		i, allowed := 0, 0
		for b.Loop() {
			q := &qs[i&mask]
			perms, err := r.PermissionsOf(ctx, q.p.TenantID, q.p.Roles)
			if err != nil {
				b.Fatal(err)
			}
			if perms[q.perm] {
				allowed++
			}
			i++
		}
		custom.check(b, 0, i, allowed)
	})
	b.Run("rbac-builtin", func(b *testing.B) {
		i, allowed := 0, 0
		for b.Loop() {
			q := &builtin[i&mask]
			if r.Allowed(ctx, q.p, q.perm) {
				allowed++
			}
			i++
		}
		builtinTally.check(b, 0, i, allowed)
	})
	b.Run("rbac-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			start := rand.IntN(len(qs))
			i, allowed := start, 0
			for pb.Next() {
				q := &qs[i&mask]
				if r.Allowed(ctx, q.p, q.perm) {
					allowed++
				}
				i++
			}
			custom.check(b, start, i-start, allowed)
		})
	})
	b.Run("tenant-load", func(b *testing.B) {
		i := 0
		for b.Loop() {
			roles, err := r.ListRoles(ctx, f.tenants[i%len(f.tenants)])
			if err != nil || len(roles) != f.roles+len(auth.BuiltinRoles) {
				b.Fatalf("ListRoles: got %d roles, %v", len(roles), err)
			}
			i++
		}
	})
	b.Run("reload-all", func(b *testing.B) {
		for b.Loop() {
			if err := r.Reload(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/tenant")
	})

	b.Run("casbin-tenant-enforcer", func(b *testing.B) {
		t := f.tenants[0]
		e := casbinEnforcer(b, d, gormadapter.Filter{Ptype: []string{"p"}, V1: []string{t.String()}})
		mine := make([]decision, 0, len(qs))
		for _, q := range qs {
			q.p.TenantID = t
			mine = append(mine, q)
		}
		i := 0
		for b.Loop() {
			q := &mine[i&mask]
			obj, act, _ := strings.Cut(q.perm, ":")
			ok, err := e.Enforce(q.p.Roles[0], t.String(), obj, act)
			if err != nil || ok != q.want {
				b.Fatalf("Enforce %s %s: got %v %v, want %v", q.p.Roles[0], q.perm, ok, err, q.want)
			}
			i++
		}
	})
	b.Run("casbin-all-rules-enforcer", func(b *testing.B) {
		e := casbinEnforcer(b, d, nil)
		i := 0
		for b.Loop() {
			q := &qs[i&mask]
			obj, act, _ := strings.Cut(q.perm, ":")
			ok, err := e.Enforce(q.p.Roles[0], q.p.TenantID.String(), obj, act)
			if err != nil || ok != q.want {
				b.Fatalf("Enforce %s %s: got %v %v, want %v", q.p.Roles[0], q.perm, ok, err, q.want)
			}
			i++
		}
	})
}

// casbinEnforcer returns a plain Casbin enforcer of auth.RBACModel over the
// gorm adapter, loaded with the rules matching filter, or with every rule
// when filter is nil.
func casbinEnforcer(b *testing.B, d *db.DB, filter any) *casbin.Enforcer {
	b.Helper()
	m, err := model.NewModelFromString(auth.RBACModel)
	if err != nil {
		b.Fatal(err)
	}
	g := d.Unscoped(context.Background())
	start := time.Now()
	var e *casbin.Enforcer
	if filter != nil {
		a, err := gormadapter.NewFilteredAdapterByDB(g, "", "casbin_rule")
		if err != nil {
			b.Fatal(err)
		}
		if e, err = casbin.NewEnforcer(m, a); err != nil {
			b.Fatal(err)
		}
		if err := e.LoadFilteredPolicy(filter); err != nil {
			b.Fatal(err)
		}
	} else {
		gormadapter.TurnOffAutoMigrate(g) // the runtime role cannot create tables
		a, err := gormadapter.NewAdapterByDB(g)
		if err != nil {
			b.Fatal(err)
		}
		if e, err = casbin.NewEnforcer(m, a); err != nil { // loads every rule
			b.Fatal(err)
		}
	}
	p, err := e.GetPolicy()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("Casbin loaded %d rules in %s", len(p), time.Since(start).Round(time.Millisecond))
	return e
}
