package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

// hotWriters, hotFor and hotProducts shape TestHotTenantWrites: 16 clients
// of one tenant writing to a handful of shared rows.
const (
	hotWriters  = 16
	hotFor      = 12 * time.Second
	hotProducts = 4
)

// TestHotTenantWrites is the write path's contract under contention: 16
// concurrent clients of one tenant edit the tenant, edit products, adjust
// stock, place two-item orders on the same few products and pay or cancel
// them, and create and delete API keys and roles. No answer may be a 5xx,
// PostgreSQL may record no deadlock, every mutating request must be in the
// audit trail exactly as often as it was sent (by request id), and the
// sealed chain must verify. It does not run in parallel: the deadlock
// counter is the database's.
func TestHotTenantWrites(t *testing.T) {
	admin := adminConn(t, testenv.Get(t))
	deadlocksBefore := deadlocks(t, admin) // every earlier server's pool is closed: its counts are in
	s := apptest.New(t, apptest.Options{MaxConns: 20})
	tn := s.NewTenant("hot", "enterprise")

	var (
		mu       sync.Mutex
		ids      = map[string]int{} // request id → mutating requests sent with it
		statuses = map[int]int{}
		failures []string
		sent     atomic.Int64
	)
	do := func(req apptest.Request) apptest.Response {
		resp, err := s.Try(req)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s %s: %v", req.Method, req.Path, err))
			return resp
		}
		statuses[resp.Status]++
		if resp.Status >= 500 {
			failures = append(failures, fmt.Sprintf("%s %s: %d %s", req.Method, req.Path, resp.Status, resp.Body))
		}
		if req.Method != http.MethodGet {
			id := resp.Header.Get(middleware.RequestIDHeader)
			if id == "" {
				failures = append(failures, fmt.Sprintf("%s %s: no request id", req.Method, req.Path))
			}
			ids[id]++
			sent.Add(1)
		}
		return resp
	}
	products := make([]string, hotProducts)
	for i := range products {
		resp := do(apptest.Request{Method: "POST", Path: "/v1/products", Key: tn.Key,
			Body: map[string]any{"sku": fmt.Sprintf("HOT-%d", i), "name": "Hot", "price": 100, "currency": "EUR", "stock": 1_000_000}})
		if resp.Status != http.StatusCreated {
			t.Fatalf("create product: got %d %s", resp.Status, resp.Body)
		}
		products[i] = resp.Map(t)["id"].(string)
	}

	key := tn.Key
	ops := []func(r *rand.Rand){
		func(r *rand.Rand) { // tenant edit
			do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: key, Body: map[string]any{"name": fmt.Sprintf("Hot %d", r.IntN(1000))}})
		},
		func(r *rand.Rand) { // product edit
			do(apptest.Request{Method: "PATCH", Path: "/v1/products/" + products[r.IntN(hotProducts)], Key: key,
				Body: map[string]any{"name": fmt.Sprintf("Hot %d", r.IntN(1000))}})
		},
		func(r *rand.Rand) { // stock adjustment
			do(apptest.Request{Method: "POST", Path: "/v1/products/" + products[r.IntN(hotProducts)] + "/stock", Key: key,
				Body: map[string]any{"delta": 1 + r.IntN(5), "reason": "restock"}})
		},
		func(r *rand.Rand) { // two-item order, then a payment or a cancel
			a := r.IntN(hotProducts)
			b := (a + 1 + r.IntN(hotProducts-1)) % hotProducts
			resp := do(apptest.Request{Method: "POST", Path: "/v1/orders", Key: key, Body: map[string]any{"customer_id": "c",
				"items": []map[string]any{{"product_id": products[a], "quantity": 1}, {"product_id": products[b], "quantity": 2}}}})
			if resp.Status != http.StatusCreated {
				return
			}
			var o struct {
				ID    string `json:"id"`
				Total int    `json:"total"`
			}
			resp.JSON(t, &o)
			if r.IntN(2) == 0 {
				do(apptest.Request{Method: "POST", Path: "/v1/payments", Key: key,
					Body: map[string]any{"order_id": o.ID, "amount": o.Total, "currency": "EUR", "payment_method": "card"}})
			} else {
				do(apptest.Request{Method: "POST", Path: "/v1/orders/" + o.ID + "/cancel", Key: key})
			}
		},
		func(r *rand.Rand) { // API key created and revoked
			resp := do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: key, Body: map[string]any{"name": "hot", "roles": []string{"viewer"}}})
			if resp.Status != http.StatusCreated {
				return
			}
			do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + resp.Map(t)["id"].(string), Key: key})
		},
		func(r *rand.Rand) { // role created and deleted
			name := fmt.Sprintf("hot-%d-%d", r.IntN(1_000_000), r.IntN(1_000_000))
			resp := do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: key, Body: map[string]any{"name": name, "permissions": []string{"products:read"}}})
			if resp.Status != http.StatusCreated {
				return
			}
			do(apptest.Request{Method: "DELETE", Path: "/v1/roles/" + name, Key: key})
		},
	}

	hammer(t, hotFor, hotWriters, func(r *rand.Rand) { ops[r.IntN(len(ops))](r) })
	mu.Lock()
	t.Logf("%d mutating requests in %v (%.0f/s); statuses %v", sent.Load(), hotFor, float64(sent.Load())/hotFor.Seconds(), statuses)
	for _, f := range failures[:min(len(failures), 10)] {
		t.Errorf("got %s, want no server error", f)
	}
	if len(failures) > 0 {
		t.Fatalf("got %d failed requests", len(failures))
	}
	mu.Unlock()

	// Every mutating request is in the trail, once per request id (a
	// request that committed and then failed has two entries, both with
	// its id), and the chain seals and verifies.
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var unsealed int
		if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND hash IS NULL`,
			tn.ID).Scan(&unsealed); err != nil {
			t.Fatal(err)
		}
		return unsealed == 0, "the audit trail sealed"
	})
	rows, err := admin.Query(t.Context(), `SELECT DISTINCT request_id FROM audit_events
		WHERE tenant_id = $1 AND request_id <> '' AND action LIKE '% /v1/%'`, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	trail, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	inTrail := make(map[string]bool, len(trail))
	for _, id := range trail {
		inTrail[id] = true
		if ids[id] == 0 {
			t.Errorf("got audit entries for request %s, which the test did not send", id)
		}
	}
	missing := 0
	for id := range ids {
		if !inTrail[id] {
			missing++
		}
	}
	if missing > 0 || len(trail) != len(ids) {
		t.Errorf("got %d requests in the audit trail, %d missing, for %d mutating requests sent; want all, once each",
			len(trail), missing, len(ids))
	}
	r, err := audit.Verify(t.Context(), s.Env.OpenDB(t, 2), mustUUID(t, tn.ID))
	if err != nil || !r.OK() {
		t.Errorf("audit verify: got %+v, %v; want a chain that holds", r, err)
	}
	if r.Events < int64(len(ids)) {
		t.Errorf("got %d sealed audit entries, want at least the %d requests", r.Events, len(ids))
	}

	// The server's connections still hold their statistics: end them, which
	// reports them, before reading the deadlock counter.
	flushAppStats(t, admin)
	if got := deadlocks(t, admin) - deadlocksBefore; got != 0 {
		t.Errorf("got %d deadlocks in PostgreSQL, want none", got)
	}
}

// adminConn connects as the superuser to the package's database.
func adminConn(t *testing.T, env *testenv.Env) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(env.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = env.DBName
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// deadlocks reads the database's deadlock counter as reported so far.
func deadlocks(t *testing.T, admin *pgx.Conn) int64 {
	t.Helper()
	var n int64
	if _, err := admin.Exec(t.Context(), "SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	if err := admin.QueryRow(t.Context(), "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// flushAppStats ends the runtime role's sessions: a backend reports its
// pending statistics (deadlocks among them) when it exits, and otherwise
// only some seconds after it goes idle.
func flushAppStats(t *testing.T, admin *pgx.Conn) {
	t.Helper()
	rows, err := admin.Query(t.Context(), `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND usename = 'tenantd_app'`)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(t.Context(), "SELECT pg_terminate_backend(pid, 5000) FROM unnest($1::int[]) AS pid", pids); err != nil {
		t.Fatal(err)
	}
}
