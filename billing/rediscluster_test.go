package billing

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/gdpr"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/rediscluster"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestRedisCluster runs billing's Redis keys and commands on a Redis
// Cluster of three masters: the rate limit buckets (redis_rate's
// single-key scripts, through Limits.AllowRequest too) and the drain of an
// earlier release's usage hashes (SCAN, then RENAME usage:{t}:… to
// usage-flushing:{t}:…, a two-key command), with the same results as on one
// node. Every key of a tenant is in its hash tag's slot, tenants spread
// over the masters, and gdpr's erase, run against each master, removes one
// tenant's keys and no other's.
func TestRedisCluster(t *testing.T) {
	cl := rediscluster.Start(t)
	cc := cl.Client(t)
	single := testenv.PrivateRedis(t).Client(t)
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)

	ids := make([]string, 48)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	checkRateLimits(t, cc, single, ids)
	checkAllowRequest(t, app, cc, single, ids)

	clusterTenants := []uuid.UUID{testenv.NewTenant(t).ID, testenv.NewTenant(t).ID}
	singleTenants := []uuid.UUID{testenv.NewTenant(t).ID, testenv.NewTenant(t).ID}
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	for _, id := range clusterTenants {
		seedLegacy(t, cc, id, hour)
		ids = append(ids, id.String())
	}
	for _, id := range singleTenants {
		seedLegacy(t, single, id, hour)
	}

	perMaster := cl.CheckTenantKeys(t, ids)
	t.Logf("tenants per master: %v", perMaster)

	flushing := drainOnCluster(t, cl, app)
	for _, key := range flushing {
		tenantID, _, _, ok := parseKey(key, legacyFlushingPrefix)
		if !ok {
			t.Errorf("the drain renamed a hash to %s, which is no flushing key", key)
		} else if got, want := cl.KeySlot(t, key), cl.KeySlot(t, "{"+tenantID.String()+"}"); got != want {
			t.Errorf("flushing key %s is in slot %d, its tenant's is %d", key, got, want)
		}
	}
	if len(flushing) != len(clusterTenants) {
		t.Errorf("the drain renamed %d hashes, want %d: %v", len(flushing), len(clusterTenants), flushing)
	}
	if left := cl.Keys(t, "usage*"); len(left) != 0 {
		t.Errorf("usage keys left in the cluster after the drain: %v", left)
	}
	if err := NewCounter(single, app, testenv.Logger(), time.Now).drainLegacy(t.Context()); err != nil {
		t.Fatalf("drain on one node: %v", err)
	}
	for i := range clusterTenants {
		got, want := usageRows(t, app, clusterTenants[i]), usageRows(t, app, singleTenants[i])
		if got != want || want == "" {
			t.Errorf("usage drained from the cluster %q, from one node %q", got, want)
		}
	}

	checkErase(t, cl, ids[0], ids[1])
}

// testPlan is a plan slow enough (5 at once, then 1 per hour) that a
// bucket's answers do not depend on how fast the test runs.
var testPlan = &planLimits{name: "cluster-test", limit: redis_rate.Limit{Rate: 1, Period: time.Hour, Burst: 5}, lease: 2}

// checkRateLimits takes leases from each tenant's bucket (the key Limits
// uses, with its plan's lease size) until it is empty, on the cluster and
// on one node, and compares the answers.
func checkRateLimits(t *testing.T, cc *redis.ClusterClient, single *redis.Client, ids []string) {
	t.Helper()
	ctx := t.Context()
	onCluster, onNode := redis_rate.NewLimiter(cc), redis_rate.NewLimiter(single)
	want := "2/3 2/1 1/0 0/0"
	for _, id := range ids {
		key := testPlan.key(uuid.MustParse(id))
		answers := func(l *redis_rate.Limiter) string {
			var out []string
			for range 4 {
				res, err := l.AllowAtMost(ctx, key, testPlan.limit, testPlan.lease)
				if err != nil {
					t.Fatalf("rate limit %s: %v", key, err)
				}
				out = append(out, fmt.Sprintf("%d/%d", res.Allowed, res.Remaining))
			}
			return strings.Join(out, " ")
		}
		if c, n := answers(onCluster), answers(onNode); c != want || n != want {
			t.Fatalf("bucket %s: allowed/remaining on the cluster %q, on one node %q, want %q", key, c, n, want)
		}
	}
}

// checkAllowRequest decides one request per tenant under the free plan
// through Limits itself, with its limiter on the cluster and on one node.
func checkAllowRequest(t *testing.T, app *db.DB, cc *redis.ClusterClient, single *redis.Client, ids []string) {
	t.Helper()
	onCluster := NewLimits(single, app, testenv.Logger(), LimitOptions{})
	onCluster.limiter = redis_rate.NewLimiter(cc)
	onNode := NewLimits(single, app, testenv.Logger(), LimitOptions{})
	for _, id := range ids {
		var answers []string
		for _, l := range []*Limits{onCluster, onNode} {
			s, known, err := l.AllowRequest(t.Context(), uuid.MustParse(id), "free")
			answers = append(answers, fmt.Sprintf("known=%v err=%v limit=%d remaining=%d", known, err, s.Limit, s.Remaining))
		}
		if answers[0] != answers[1] || !strings.HasPrefix(answers[0], "known=true err=<nil>") {
			t.Fatalf("tenant %s: on the cluster %s, on one node %s", id, answers[0], answers[1])
		}
	}
	if n := onCluster.RedisErrors(); n != 0 {
		t.Errorf("%d rate limit decisions on the cluster failed in Redis", n)
	}
}

// seedLegacy leaves usage of the tenant as an earlier release did: an
// hour's hash, and a flushing key its flusher renamed and did not apply.
// parseKey, which the drain reads keys with, checks the names.
func seedLegacy(t *testing.T, rdb redis.Cmdable, tenantID uuid.UUID, hour time.Time) {
	t.Helper()
	ctx := t.Context()
	usage := legacyUsagePrefix + "{" + tenantID.String() + "}:" + hour.Format(hourLayout)
	flushing := legacyFlushingPrefix + "{" + tenantID.String() + "}:" + hour.Add(time.Hour).Format(hourLayout) + ":" + uuid.NewString()
	for _, key := range []string{usage, flushing} {
		prefix := legacyUsagePrefix
		if key == flushing {
			prefix = legacyFlushingPrefix
		}
		if id, _, _, ok := parseKey(key, prefix); !ok || id != tenantID {
			t.Fatalf("seed key %s does not parse as the tenant's", key)
		}
	}
	for key, fields := range map[string]map[string]int64{
		usage:    {MeterAPIRequests + "|": 3, MeterPaymentVolume + "|EUR": 1999},
		flushing: {MeterAPIRequests + "|": 5},
	} {
		for f, n := range fields {
			if err := rdb.HIncrBy(ctx, key, f, n).Err(); err != nil {
				t.Fatalf("seed %s: %v", key, err)
			}
		}
	}
}

// drainOnCluster drains the earlier release's usage from every master,
// with a Counter on a client of that node (SCAN sees one node's keys), and
// returns the flushing keys the drain renamed hashes to.
func drainOnCluster(t *testing.T, cl *rediscluster.Cluster, app *db.DB) []string {
	t.Helper()
	var mu sync.Mutex
	var flushing []string
	for _, node := range cl.NodeClients(t) {
		c := NewCounter(node, app, testenv.Logger(), time.Now)
		c.hooks.afterRename = func(key string) error {
			mu.Lock()
			defer mu.Unlock()
			flushing = append(flushing, key)
			return nil
		}
		if err := c.drainLegacy(t.Context()); err != nil {
			t.Fatalf("drain on %s: %v", node.Options().Addr, err)
		}
	}
	return flushing
}

// usageRows is the tenant's usage_counters as "meter|currency@hour=n",
// with hours relative to the earliest.
func usageRows(t *testing.T, app *db.DB, tenantID uuid.UUID) string {
	t.Helper()
	type row struct {
		Meter, Currency string
		Hour            time.Time
		Quantity        int64
	}
	rows := testenv.Query[[]row](t, app, tenantID, "SELECT meter, currency, hour, quantity FROM usage_counters ORDER BY hour, meter, currency")
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%s|%s@+%v=%d", r.Meter, r.Currency, r.Hour.Sub(rows[0].Hour), r.Quantity))
	}
	return strings.Join(out, " ")
}

// checkErase runs gdpr's erase of a tenant's Redis keys against every
// master (its SCAN sees one node; its DEL takes all the keys of one SCAN
// page at once, which a cluster allows only within one slot) and checks
// that the tenant's keys are gone and another's are not.
func checkErase(t *testing.T, cl *rediscluster.Cluster, erased, kept string) {
	t.Helper()
	keptBefore := keyNames(cl.Keys(t, "*"+kept+"*"))
	var deleted int64
	for _, node := range cl.NodeClients(t) {
		n, err := gdpr.DeleteRedisKeys(t.Context(), node, uuid.MustParse(erased))
		if err != nil {
			t.Fatalf("erase on %s: %v", node.Options().Addr, err)
		}
		deleted += n
	}
	if left := cl.Keys(t, "*"+erased+"*"); deleted == 0 || len(left) != 0 {
		t.Errorf("erase deleted %d keys and left %v", deleted, left)
	}
	bucket := testPlan.key(uuid.MustParse(kept))
	if got := keyNames(cl.Keys(t, "*"+kept+"*")); !slices.ContainsFunc(got, func(k string) bool { return strings.HasSuffix(k, bucket) }) {
		t.Errorf("another tenant's keys %v became %v", keptBefore, got)
	}
}

func keyNames(keys []rediscluster.Key) []string {
	names := map[string]bool{}
	for _, k := range keys {
		names[k.Name] = true
	}
	return slices.Sorted(maps.Keys(names))
}
