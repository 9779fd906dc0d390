package auth

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	rediswatcher "github.com/casbin/redis-watcher/v2"
	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/rediscluster"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestRedisCluster runs auth's use of Redis on a Redis Cluster of three
// masters: the failed-authentication throttle (redis_rate's single-key
// scripts, one bucket per client address) gives the answers it gives on
// one node, each address's bucket in its hash tag's slot; and the two
// pub/sub channels, credential invalidations and the RBAC policy watcher,
// carry messages between replicas connected to different masters and to
// and from a cluster client.
func TestRedisCluster(t *testing.T) {
	cl := rediscluster.Start(t)
	t.Run("throttle", func(t *testing.T) { checkThrottle(t, cl) })
	t.Run("invalidations", func(t *testing.T) { checkInvalidations(t, cl) })
	t.Run("policy watcher", func(t *testing.T) { checkPolicyWatcher(t, cl) })
}

// checkThrottle spends and gives back failures of random IPv6 clients
// with a budget of two, on the cluster and on one node.
func checkThrottle(t *testing.T, cl *rediscluster.Cluster) {
	ctx := t.Context()
	limit := FailureLimit{Burst: 2, Every: time.Hour}
	onCluster := newThrottle(nil, limit, testenv.Logger())
	onCluster.limiter = redis_rate.NewLimiter(cl.Client(t))
	onNode := newThrottle(testenv.Get(t).RedisClient(t), limit, testenv.Logger())
	var prefixes []string
	for range 48 {
		client := fmt.Sprintf("2001:db8:%x:%x:%x::1", rand.Uint32N(1<<16), rand.Uint32N(1<<16), rand.Uint32N(1<<16))
		prefixes = append(prefixes, clientKey(client))
		answers := func(th *throttle) string {
			var out []string
			var first ticket
			for i := range 5 {
				if i == 3 {
					th.giveBack(ctx, first)
					out = append(out, "given back")
				}
				tk, err := th.take(ctx, client)
				switch {
				case err != nil:
					out = append(out, "refused")
				case !tk.redis:
					out = append(out, "counted in memory")
				default:
					out = append(out, "taken")
				}
				if i == 0 {
					first = tk
				}
			}
			if th.brokenUntil.Load() != 0 {
				out = append(out, "(Redis failed)")
			}
			return strings.Join(out, ", ")
		}
		want := "taken, taken, refused, given back, taken, refused"
		if c, n := answers(onCluster), answers(onNode); c != want || n != want {
			t.Fatalf("client %s: on the cluster %q, on one node %q, want %q", client, c, n, want)
		}
	}
	t.Logf("client addresses per master: %v", cl.CheckTenantKeys(t, prefixes))
}

// checkInvalidations runs two Services, as two replicas, each on a client
// of a different master: a tenant invalidated on one is dropped from the
// other's cache, and a message a cluster client publishes arrives too.
func checkInvalidations(t *testing.T, cl *rediscluster.Cluster) {
	ctx := t.Context()
	nodes := cl.NodeClients(t)
	one := NewService(nil, nodes[0], 10*time.Second, testenv.Logger())
	two := NewService(nil, nodes[2], 10*time.Second, testenv.Logger())
	testenv.Background(t, two.ListenForInvalidations)
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		one.invalidate(ctx, "key:probe")
		return two.recent.Contains("probe"), "the replica on the third master hears the first's invalidations"
	})

	if err := cl.Client(t).Publish(ctx, invalidationChannel, "key:from-cluster-client").Err(); err != nil {
		t.Fatalf("publish through the cluster client: %v", err)
	}
	testenv.Eventually(t, 2*time.Second, func() (bool, string) {
		return two.recent.Contains("from-cluster-client"), "the replica hears the cluster client's invalidation"
	})

	a, b := uuid.New(), uuid.New()
	two.cache.Add("prefix-a", cachedKey{principal: identity.Principal{TenantID: a}})
	two.cache.Add("prefix-b", cachedKey{principal: identity.Principal{TenantID: b}})
	one.InvalidateTenant(ctx, a)
	testenv.Eventually(t, 2*time.Second, func() (bool, string) {
		return !two.cache.Contains("prefix-a"), "the other replica drops the invalidated tenant's key"
	})
	if !two.cache.Contains("prefix-b") {
		t.Error("the other replica dropped another tenant's key too")
	}
}

// checkPolicyWatcher runs two RBACs, as two replicas, whose watchers are
// on different masters, and a cluster client subscribed to their channel:
// a role created on one is granted by the other, and the cluster client
// reads the announcement in the Casbin watcher's format.
func checkPolicyWatcher(t *testing.T, cl *rediscluster.Cluster) {
	ctx := t.Context()
	env := testenv.Get(t)
	nodes := cl.NodeClients(t)
	opts := RBACOptions{ReloadInterval: time.Hour, Channel: "test:casbin:" + t.Name()}
	replica := func(rdb *redis.Client) *RBAC {
		r, err := NewRBAC(env.OpenDB(t, 4), rdb, testenv.Logger(), opts)
		if err != nil {
			t.Fatalf("NewRBAC: %v", err)
		}
		testenv.Background(t, r.Run)
		return r
	}
	a, b := replica(nodes[0]), replica(nodes[1])
	sub := cl.Client(t).Subscribe(ctx, opts.Channel)
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe the cluster client: %v", err)
	}

	tenant := testenv.NewTenant(t).ID
	admin := identity.Principal{Kind: identity.KindAPIKey, TenantID: tenant, Subject: "test", Roles: []string{"admin"}}
	support := identity.Principal{Kind: identity.KindAPIKey, TenantID: tenant, Subject: "test", Roles: []string{"support"}}
	if b.Allowed(ctx, support, "orders:read") {
		t.Fatal("a role that does not exist yet grants orders:read")
	}
	if _, err := a.CreateRole(ctx, admin, Role{Name: "support", Permissions: []string{"orders:read"}}); err != nil {
		t.Fatalf("create role: %v", err)
	}
	// b's watcher may have subscribed after the announcement: it then
	// drops its cache on connecting, as in production.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return b.Allowed(ctx, support, "orders:read"), "the replica on the second master grants the role created on the first"
	})
	select {
	case m := <-sub.Channel():
		var msg rediswatcher.MSG
		if err := json.Unmarshal([]byte(m.Payload), &msg); err != nil || msg.ID != a.id || msg.Method == "" {
			t.Errorf("the cluster client read %q (%v), want an announcement of replica %s", m.Payload, err, a.id)
		}
	case <-time.After(2 * time.Second):
		t.Error("the cluster client read no announcement")
	}
	if _, err := b.UpdateRole(ctx, admin, "support", []string{"orders:read", "orders:write"}, ""); err != nil {
		t.Fatalf("update role: %v", err)
	}
	took := testenv.Eventually(t, time.Second, func() (bool, string) {
		return a.Allowed(ctx, support, "orders:write"), "the replica on the first master applies the second's change"
	})
	t.Logf("a change crossed masters in %v", took)
}
