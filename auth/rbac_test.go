package auth_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	gormadapter "github.com/casbin/gorm-adapter/v3"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
)

// replica is one tenantd process's RBAC: its own pool, its own Redis client
// and its own watcher, running until the test ends.
type replica struct {
	*auth.RBAC
	db *db.DB
}

// replicaOptions are options for replicas of one test: a channel of the
// test's own, so no other test's messages arrive, and no periodic reload
// unless the test asks for one.
func replicaOptions(t *testing.T) auth.RBACOptions {
	return auth.RBACOptions{ReloadInterval: time.Hour, Channel: "test:casbin:" + t.Name()}
}

// newReplica starts an RBAC on the package database; withRedis false
// leaves it without a watcher.
func newReplica(t *testing.T, opts auth.RBACOptions, withRedis bool) replica {
	t.Helper()
	var rdb *redis.Client
	if withRedis {
		rdb = testenv.Get(t).RedisClient(t)
	}
	return newReplicaOn(t, opts, rdb)
}

// newReplicaOn starts an RBAC on the package database whose watcher uses
// rdb (none when nil).
func newReplicaOn(t *testing.T, opts auth.RBACOptions, rdb *redis.Client) replica {
	t.Helper()
	d := testenv.Get(t).OpenDB(t, 4)
	r, err := auth.NewRBAC(d, rdb, testenv.Logger(), opts)
	if err != nil {
		t.Fatalf("NewRBAC: %v", err)
	}
	testenv.Background(t, r.Run)
	return replica{RBAC: r, db: d}
}

// as is a principal of the tenant with the given roles.
func as(tenant uuid.UUID, roles ...string) identity.Principal {
	return identity.Principal{Kind: identity.KindAPIKey, TenantID: tenant, Subject: "test", Roles: roles}
}

func mustCreate(t *testing.T, r replica, tenant uuid.UUID, name string, perms ...string) auth.Role {
	t.Helper()
	role, err := r.CreateRole(context.Background(), as(tenant, "admin"), auth.Role{Name: name, Permissions: perms})
	if err != nil {
		t.Fatalf("create role %s: %v", name, err)
	}
	return role
}

// TestDecisionsMatchCasbin checks the decision table against Casbin's own
// enforcer on the same rules, for every role and permission.
func TestDecisionsMatchCasbin(t *testing.T) {
	r := newReplica(t, replicaOptions(t), false)
	ctx := context.Background()
	a, b := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	mustCreate(t, r, a, "auditor", "audit:read", "orders:read", "events:read")
	mustCreate(t, r, a, "cashier", "payments:write", "payments:refund", "orders:write")
	mustCreate(t, r, a, "everything", auth.Permissions...)
	mustCreate(t, r, b, "auditor", "usage:read")
	// A rule outside the contract is stored but grants nothing Allowed
	// could ask about.
	testenv.Exec(t, r.db, a, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3) VALUES ('p', 'auditor', ?, 'orders', 'fly')`, a.String())
	if err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}

	m, err := model.NewModelFromString(auth.RBACModel)
	if err != nil {
		t.Fatal(err)
	}
	adapter, err := gormadapter.NewFilteredAdapterByDB(r.db.Unscoped(ctx), "", "casbin_rule")
	if err != nil {
		t.Fatal(err)
	}
	e, err := casbin.NewEnforcer(m, adapter)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.LoadFilteredPolicy(gormadapter.Filter{Ptype: []string{"p"}, V1: []string{a.String(), b.String()}}); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, tenant := range []uuid.UUID{a, b} {
		for _, role := range []string{"auditor", "cashier", "everything", "ghost"} {
			for _, perm := range auth.Permissions {
				obj, act, _ := strings.Cut(perm, ":")
				want, err := e.Enforce(role, tenant.String(), obj, act)
				if err != nil {
					t.Fatal(err)
				}
				if got := r.Allowed(ctx, as(tenant, role), perm); got != want {
					t.Errorf("tenant %s role %s %s: got %v, Casbin Enforce says %v", tenant, role, perm, got, want)
				}
				checked++
			}
		}
	}
	if checked != 2*4*len(auth.Permissions) {
		t.Fatalf("checked %d decisions", checked)
	}
}

// TestChangesReachOtherReplicaWithinOneSecond runs two replicas on one
// database and Redis: what one changes, the other applies within a second,
// through the watcher alone (no periodic reload).
func TestChangesReachOtherReplicaWithinOneSecond(t *testing.T) {
	opts := replicaOptions(t)
	a, b := newReplica(t, opts, true), newReplica(t, opts, true)
	ctx := context.Background()
	tenant := testenv.NewTenant(t).ID
	admin := as(tenant, "admin")
	support := as(tenant, "support")

	// Warm-up: both watchers are subscribed once a change has gone across.
	if ok := b.Allowed(ctx, as(tenant, "warmup"), "orders:read"); ok {
		t.Fatal("warmup role allowed before it exists")
	}
	mustCreate(t, a, tenant, "warmup", "orders:read")
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return b.Allowed(ctx, as(tenant, "warmup"), "orders:read"), "replica b sees the warm-up role"
	})

	mustCreate(t, a, tenant, "support", "orders:read", "orders:write")
	testenv.Eventually(t, time.Second, func() (bool, string) { return b.Allowed(ctx, support, "orders:write"), "b grants a role created on a" })

	steps := []struct {
		name   string
		change func() error
		perm   string
		want   bool
	}{
		{"permission removed on a", func() error {
			_, err := a.UpdateRole(ctx, admin, "support", []string{"orders:read"}, "")
			return err
		}, "orders:write", false},
		{"permission added on b, seen by a", func() error {
			_, err := b.UpdateRole(ctx, admin, "support", []string{"orders:read", "payments:refund"}, "")
			return err
		}, "payments:refund", true},
		{"role deleted on a", func() error { return a.DeleteRole(ctx, admin, "support") }, "orders:read", false},
	}
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			other := b
			if i == 1 {
				other = a
			}
			// Make sure the other replica has the old state cached.
			if got := other.Allowed(ctx, support, s.perm); got == s.want {
				t.Fatalf("before the change: got %v, want %v", got, !s.want)
			}
			if err := s.change(); err != nil {
				t.Fatal(err)
			}
			took := testenv.Eventually(t, 2*time.Second, func() (bool, string) {
				return other.Allowed(ctx, support, s.perm) == s.want, "other replica applies the change"
			})
			if took >= time.Second {
				t.Errorf("took %v, want under 1s", took)
			}
			t.Logf("applied on the other replica after %v", took)
		})
	}
}

// TestReloadAfterRedisRestart loses a change announcement while Redis is
// down; the replica catches the change when its subscription reconnects.
func TestReloadAfterRedisRestart(t *testing.T) {
	rs := testenv.PrivateRedis(t) // stopped below: a Redis of the test's own
	opts := replicaOptions(t)
	a, b := newReplicaOn(t, opts, rs.Client(t)), newReplicaOn(t, opts, rs.Client(t))
	ctx := context.Background()
	tenant := testenv.NewTenant(t).ID
	night := as(tenant, "night")

	if b.Allowed(ctx, night, "orders:read") {
		t.Fatal("role allowed before it exists")
	}
	mustCreate(t, a, tenant, "night", "orders:read", "orders:write")
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { return b.Allowed(ctx, night, "orders:write"), "b sees the new role" })
	// After connecting, a replica drops its cache once more a second later
	// (RBAC.Run); wait that out so that only the reconnection can help b.
	time.Sleep(1500 * time.Millisecond)
	if !b.Allowed(ctx, night, "orders:write") {
		t.Fatal("b lost the role's permission")
	}

	rs.Stop()
	if _, err := a.UpdateRole(ctx, as(tenant, "admin"), "night", []string{"orders:read"}, ""); err != nil {
		t.Fatalf("update while Redis is down: %v", err)
	}
	// The announcement is lost: b still has the old decision.
	time.Sleep(200 * time.Millisecond)
	if !b.Allowed(ctx, night, "orders:write") {
		t.Fatal("b applied the change while Redis was down; the test proves nothing")
	}

	if err := rs.Start(ctx); err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	restarted := time.Now()
	took := testenv.Eventually(t, 10*time.Second, func() (bool, string) { return !b.Allowed(ctx, night, "orders:write"), "b reloads after reconnecting" })
	t.Logf("b applied the lost change %v after Redis restarted", took)
	if !b.Allowed(ctx, night, "orders:read") {
		t.Error("b lost the permission the role kept")
	}

	// And announcements flow again: past b's second drop of its cache,
	// only the watcher can bring the next change within a second.
	time.Sleep(time.Until(restarted.Add(1500 * time.Millisecond)))
	if b.Allowed(ctx, night, "events:read") {
		t.Fatal("events:read allowed before it is granted")
	}
	if _, err := a.UpdateRole(ctx, as(tenant, "admin"), "night", []string{"orders:read", "events:read"}, ""); err != nil {
		t.Fatal(err)
	}
	took = testenv.Eventually(t, 2*time.Second, func() (bool, string) { return b.Allowed(ctx, night, "events:read"), "b applies the next change" })
	if took >= time.Second {
		t.Errorf("after the restart a change took %v to arrive, want under 1s", took)
	}
}

// TestPeriodicReloadCatchesUnannouncedChanges changes rules behind the
// watcher's back; the periodic reload picks them up.
func TestPeriodicReloadCatchesUnannouncedChanges(t *testing.T) {
	opts := replicaOptions(t)
	opts.ReloadInterval = 100 * time.Millisecond
	r := newReplica(t, opts, false)
	ctx := context.Background()
	tenant := testenv.NewTenant(t).ID
	ops := as(tenant, "ops")
	if r.Allowed(ctx, ops, "orders:read") {
		t.Fatal("allowed before any rule exists")
	}
	// Behind the watcher's back, but in the tenant's transaction: the
	// runtime role writes rules of that tenant only.
	testenv.Exec(t, r.db, tenant, `INSERT INTO casbin_rule (ptype, v0, v1, v2, v3) VALUES ('p', 'ops', ?, 'orders', 'read')`, tenant.String())
	testenv.Eventually(t, 2*time.Second, func() (bool, string) { return r.Allowed(ctx, ops, "orders:read"), "reload grants the inserted rule" })
	testenv.Exec(t, r.db, tenant, `DELETE FROM casbin_rule WHERE v1 = ?`, tenant.String())
	testenv.Eventually(t, 2*time.Second, func() (bool, string) { return !r.Allowed(ctx, ops, "orders:read"), "reload revokes the deleted rule" })
}

// TestConcurrentCreatesAcrossReplicas creates one role name on two replicas
// at once: the tenant's policy lock lets exactly one through.
func TestConcurrentCreatesAcrossReplicas(t *testing.T) {
	opts := replicaOptions(t)
	replicas := []replica{newReplica(t, opts, true), newReplica(t, opts, true)}
	ctx := context.Background()
	for round := range 10 {
		tenant := testenv.NewTenant(t).ID
		errs := testenv.Race(4, func(i int) error {
			_, err := replicas[i%2].CreateRole(ctx, as(tenant, "admin"), auth.Role{Name: "dup", Permissions: []string{auth.Permissions[i]}})
			return err
		})
		if created := testenv.Succeeded(t, errs, auth.ErrRoleExists); created != 1 {
			t.Fatalf("round %d: %d creates succeeded, want 1", round, created)
		}
		roles, err := replicas[0].ListRoles(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range roles {
			if role.Name == "dup" && len(role.Permissions) != 1 {
				t.Fatalf("round %d: role has %v, want the one permission of the winner", round, role.Permissions)
			}
		}
	}
}

// TestDecisionsDuringChanges runs decisions, reloads and changes at once
// (meant for -race): a role nobody changes keeps its grants throughout.
func TestDecisionsDuringChanges(t *testing.T) {
	r := newReplica(t, replicaOptions(t), true)
	ctx := context.Background()
	tenant := testenv.NewTenant(t).ID
	mustCreate(t, r, tenant, "stable", "orders:read")
	mustCreate(t, r, tenant, "flappy", "orders:write")
	stable, flappy := as(tenant, "stable"), as(tenant, "flappy")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures sync.Map
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !r.Allowed(ctx, stable, "orders:read") {
					failures.Store("stable lost orders:read", true)
				}
				if r.Allowed(ctx, stable, "orders:write") {
					failures.Store("stable gained orders:write", true)
				}
				r.Allowed(ctx, flappy, "orders:write")
				if _, err := r.PermissionsOf(ctx, tenant, []string{"stable", "flappy", "clerk"}); err != nil {
					failures.Store(fmt.Sprint("PermissionsOf: ", err), true)
				}
			}
		})
	}
	for i := range 20 {
		perms := []string{"orders:write"}
		if i%2 == 0 {
			perms = []string{"payments:write"}
		}
		if _, err := r.UpdateRole(ctx, as(tenant, "admin"), "flappy", perms, ""); err != nil {
			t.Fatal(err)
		}
		if err := r.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool {
		t.Error(k)
		return true
	})
	// The last update (i = 19) left orders:write.
	if !r.Allowed(ctx, flappy, "orders:write") || r.Allowed(ctx, flappy, "payments:write") {
		t.Error("flappy does not end with the last update's permissions")
	}
}
