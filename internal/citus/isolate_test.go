//go:build citus

package citus_test

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// sample is one request of the load.
type sample struct {
	tenant  string
	start   time.Time
	took    time.Duration
	ordered bool // a placed order (201)
	err     string
}

// load sends requests for a few tenants, one client per tenant, until
// stopped: an order then a read of the product, over and over.
type load struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(s *apptest.Server, shops []shop, pause time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	for _, sh := range shops {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			reqs := []apptest.Request{sh.orderRequest(1),
				{Method: "GET", Path: "/v1/products/" + sh.product, Key: sh.tenant.Key}}
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				case <-time.After(pause):
				}
				req := reqs[i%len(reqs)]
				start := time.Now()
				resp, err := s.Try(req)
				smp := sample{tenant: sh.tenant.ID, start: start, took: time.Since(start)}
				switch {
				case err != nil:
					smp.err = fmt.Sprintf("%s %s: %v", req.Method, req.Path, err)
				case req.Method == "POST" && resp.Status == 201:
					smp.ordered = true
				case req.Method == "GET" && resp.Status == 200:
				default:
					smp.err = fmt.Sprintf("%s %s: %d %s", req.Method, req.Path, resp.Status, resp.Body)
				}
				l.mu.Lock()
				l.samples = append(l.samples, smp)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// finish stops the load and returns what it did.
func (l *load) finish() []sample {
	close(l.stop)
	l.wg.Wait()
	return l.samples
}

// window summarises the requests that started in [from, to).
func window(samples []sample, from, to time.Time) (n int, p50, maxTook time.Duration) {
	var took []time.Duration
	for _, s := range samples {
		if !s.start.Before(from) && s.start.Before(to) {
			took = append(took, s.took)
		}
	}
	if len(took) == 0 {
		return 0, 0, 0
	}
	slices.Sort(took)
	return len(took), took[len(took)/2], took[len(took)-1]
}

// TestIsolateTenantUnderLoad isolates one tenant to a shard of its own
// (isolate_tenant_to_new_shard, block_writes, as the owner) and moves that
// shard to the other worker (citus_move_shard_placement, block_writes, as
// the superuser: FORCE RLS binds the owner's COPY) while the real HTTP app
// serves orders and product reads for four tenants. No request may fail
// (writes to the moving shard wait; Citus's "shard for the given value does
// not exist" is 40001, which db.WithTenant retries), and afterwards the
// tenant's rows are all there, alone on its shards, on the other worker.
func TestIsolateTenantUnderLoad(t *testing.T) {
	env := testenv.Get(t)
	s := apptest.New(t, apptest.Options{MaxConns: 8})
	var shops []shop
	for i := range 4 {
		shops = append(shops, newShop(t, s, fmt.Sprintf("load-%d", i), 1_000_000, 100))
	}
	target := shops[0]
	owner := connect(t, env.OwnerURL)
	admin := connect(t, env.AdminDBURL())
	_, workers := clusterNodes(t, admin)

	l := startLoad(s, shops, 20*time.Millisecond)
	time.Sleep(2 * time.Second) // a baseline before the isolation
	isolateStart := time.Now()
	var shardID int64
	err := owner.QueryRow(t.Context(), `SELECT isolate_tenant_to_new_shard('products', $1::uuid, 'CASCADE',
		shard_transfer_mode => 'block_writes')`, target.tenant.ID).Scan(&shardID)
	isolateTook := time.Since(isolateStart)
	if err != nil {
		l.finish()
		t.Fatalf("isolate_tenant_to_new_shard as the owner: %v", err)
	}
	from := placementOf(t, admin, shardID)
	to := workers[0]
	if to == from {
		to = workers[1]
	}
	moveStart := time.Now()
	_, err = admin.Exec(t.Context(), `SELECT citus_move_shard_placement($1, $2, $3, $4, $5, shard_transfer_mode => 'block_writes')`,
		shardID, from.Host, from.Port, to.Host, to.Port)
	moveTook := time.Since(moveStart)
	if err != nil {
		l.finish()
		t.Fatalf("citus_move_shard_placement of shard %d from %s to %s: %v", shardID, from, to, err)
	}
	moveEnd := time.Now()
	time.Sleep(2 * time.Second) // and after
	samples := l.finish()

	var failed []string
	ordered := map[string]int64{}
	for _, smp := range samples {
		if smp.err != "" {
			failed = append(failed, smp.err)
		}
		if smp.ordered {
			ordered[smp.tenant]++
		}
	}
	nBase, p50Base, maxBase := window(samples, time.Time{}, isolateStart)
	nIso, p50Iso, maxIso := window(samples, isolateStart, moveStart)
	nMove, p50Move, maxMove := window(samples, moveStart, moveEnd)
	t.Logf("isolate_tenant_to_new_shard (block_writes): %v; citus_move_shard_placement %s -> %s (block_writes): %v", isolateTook.Round(time.Millisecond), from, to, moveTook.Round(time.Millisecond))
	t.Logf("requests: %d, orders placed per tenant %v, %d failed", len(samples), slices.Sorted(maps.Values(ordered)), len(failed))
	t.Logf("latency before: %d requests, p50 %v, max %v", nBase, p50Base.Round(time.Millisecond), maxBase.Round(time.Millisecond))
	t.Logf("latency during the isolation: %d requests, p50 %v, max %v (the pause)", nIso, p50Iso.Round(time.Millisecond), maxIso.Round(time.Millisecond))
	t.Logf("latency during the move: %d requests, p50 %v, max %v (the pause)", nMove, p50Move.Round(time.Millisecond), maxMove.Round(time.Millisecond))
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed during the isolation and move; first: %v", len(failed), len(samples), failed[:min(len(failed), 5)])
	}
	if nIso == 0 || nMove == 0 {
		t.Errorf("requests started during the isolation %d, during the move %d: the load did not overlap them", nIso, nMove)
	}
	checkIsolated(t, env, admin, target, to)
	checkOrdersKept(t, admin, shops, ordered)
}

// placementOf is the node holding shard id.
func placementOf(t *testing.T, admin *pgx.Conn, id int64) node {
	t.Helper()
	var n node
	err := admin.QueryRow(t.Context(), `SELECT s.nodename, s.nodeport, d.groupid FROM citus_shards s
		JOIN pg_dist_node d ON d.nodename = s.nodename AND d.nodeport = s.nodeport WHERE s.shardid = $1`, id).Scan(&n.Host, &n.Port, &n.Group)
	if err != nil {
		t.Fatalf("placement of shard %d: %v", id, err)
	}
	return n
}

// checkIsolated checks that, for every distributed table, the target
// tenant's shard covers only its hash value, lies on node on, and holds
// the tenant's rows only.
func checkIsolated(t *testing.T, env *testenv.Env, admin *pgx.Conn, target shop, on node) {
	t.Helper()
	ctx := t.Context()
	worker := connect(t, on.url(t, env.AdminDBURL()))
	for _, tb := range distributedTables(t, admin) {
		var id int64
		var name string
		var single bool
		err := admin.QueryRow(ctx, `SELECT s.shardid, shard_name(s.logicalrelid, s.shardid), s.shardminvalue = s.shardmaxvalue
			FROM pg_dist_shard s WHERE s.shardid = get_shard_id_for_distribution_column($1::regclass, $2::uuid)`,
			tb.Name, target.tenant.ID).Scan(&id, &name, &single)
		if err != nil {
			t.Fatalf("%s: the target tenant's shard: %v", tb.Name, err)
		}
		if !single {
			t.Errorf("%s: shard %d of the isolated tenant covers more than its hash value", tb.Name, id)
		}
		if got := placementOf(t, admin, id); got != on {
			t.Errorf("%s: shard %d is on %s, want %s", tb.Name, id, got, on)
		}
		rows, err := countByTenant(ctx, worker, name, tb.Column)
		if err != nil {
			t.Fatalf("%s on %s: %v", name, on, err)
		}
		for tenant := range rows {
			if tenant != target.tenant.ID {
				t.Errorf("%s (%s) holds rows of tenant %s besides %s", name, tb.Name, tenant, target.tenant.ID)
			}
		}
		if tb.Name == "products" && rows[target.tenant.ID] != 1 {
			t.Errorf("%s holds %d products of the tenant, want 1", name, rows[target.tenant.ID])
		}
	}
}

// checkOrdersKept checks that every order the load placed is in the
// database: its order.placed event and its reserved stock (nothing is paid,
// and the reservations outlive the test).
func checkOrdersKept(t *testing.T, admin *pgx.Conn, shops []shop, ordered map[string]int64) {
	t.Helper()
	for _, sh := range shops {
		var placed, reserved int64
		err := admin.QueryRow(t.Context(), `SELECT
				(SELECT count(*) FROM events WHERE tenant_id = $1::uuid AND type = 'order.placed'),
				(SELECT stock_reserved FROM products WHERE tenant_id = $1::uuid AND id = $2::uuid)`,
			sh.tenant.ID, sh.product).Scan(&placed, &reserved)
		if err != nil {
			t.Fatalf("orders of %s: %v", sh.tenant.Slug, err)
		}
		if placed != ordered[sh.tenant.ID] || reserved != ordered[sh.tenant.ID] {
			t.Errorf("tenant %s: %d orders placed (201), but %d order.placed events and %d reserved", sh.tenant.Slug, ordered[sh.tenant.ID], placed, reserved)
		}
	}
}
