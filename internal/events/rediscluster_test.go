package events

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/rediscluster"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestStreamLeasesOnRedisCluster runs the event stream leases (their
// scripts and the release's ZREM, on the tenant's key) on a Redis Cluster
// of three masters and on one node: the same answers, each tenant's key in
// its hash tag's slot, and tenants on every master.
func TestStreamLeasesOnRedisCluster(t *testing.T) {
	cl := rediscluster.Start(t)
	cc := cl.Client(t)
	single := testenv.Get(t).RedisClient(t)
	ids := make([]string, 48)
	for i := range ids {
		ids[i] = uuid.NewString()
		tenant := uuid.MustParse(ids[i])
		c, n := streamLeases(t, cc, tenant), streamLeases(t, single, tenant)
		if want := "acquire:1 acquire:1 acquire:0 renew:1 release:1 acquire:1 held:2"; c != want || n != want {
			t.Fatalf("tenant %s: on the cluster %q, on one node %q, want %q", tenant, c, n, want)
		}
	}
	t.Logf("tenants per master: %v", cl.CheckTenantKeys(t, ids))
}

// streamLeases opens three streams of the tenant under a cap of two,
// renews one, releases one and opens the third again, as StreamLimit does,
// and returns each answer.
func streamLeases(t *testing.T, rdb redis.Cmdable, tenant uuid.UUID) string {
	t.Helper()
	ctx := t.Context()
	key := []string{streamsKey(tenant)}
	lease := time.Minute.Milliseconds()
	var out []string
	note := func(what string, n int64, err error) {
		if err != nil {
			t.Fatalf("%s on %s: %v", what, key[0], err)
		}
		out = append(out, fmt.Sprintf("%s:%d", what, n))
	}
	for _, stream := range []string{"a", "b", "c"} {
		n, err := acquireScript.Run(ctx, rdb, key, stream, 2, lease).Int64()
		note("acquire", n, err)
	}
	n, err := renewScript.Run(ctx, rdb, key, "a", lease).Int64()
	note("renew", n, err)
	n, err = rdb.ZRem(ctx, key[0], "b").Result()
	note("release", n, err)
	n, err = acquireScript.Run(ctx, rdb, key, "c", 2, lease).Int64()
	note("acquire", n, err)
	n, err = rdb.ZCard(ctx, key[0]).Result()
	note("held", n, err)
	return strings.Join(out, " ")
}
