package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const operatorKey = "shutdown-test-operator-key-0123456789"

// outcome is one request of the load and how it ended.
type outcome struct {
	start  time.Time
	status int
	err    error
}

// TestGracefulShutdown sends SIGTERM to a real `tenantd serve` under load:
// readiness fails at once, every request that had started completes, the
// process exits 0 and every served request is counted in usage_counters.
// With Redis down (stopped before the load, so every count takes the
// PostgreSQL path) the same holds: a Redis outage is no reason to exit 1.
func TestGracefulShutdown(t *testing.T) {
	env := testenv.Get(t)
	bin := apptest.BuildBinary(t, ".")
	tests := []struct {
		name      string
		redisDown bool
	}{
		{"redis up", false},
		{"redis down", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A Redis of its own: stopping it touches no other test.
			rdb := testenv.PrivateRedis(t)
			s := startShutdownServer(t, bin, env, rdb.URL)
			tenantID, key := s.createTenant(t, "shut")
			if tt.redisDown {
				rdb.Stop()
			}
			shutdownUnderLoad(t, env, s, tenantID, key)
		})
	}
}

// shutdownUnderLoad creates a product, puts s under load, sends SIGTERM and
// checks the drain, the exit status and the usage counts.
func shutdownUnderLoad(t *testing.T, env *testenv.Env, s *shutdownServer, tenantID uuid.UUID, key string) {
	t.Helper()
	call := s.call
	product := s.createProduct(t, key, "S-1", 100000)

	var mu sync.Mutex
	var outcomes []outcome
	record := func(start time.Time, status int, err error) {
		mu.Lock()
		outcomes = append(outcomes, outcome{start, status, err})
		mu.Unlock()
	}
	stopLoad := apptest.Loop(6, func(_, i int) bool {
		start := time.Now()
		var (
			status int
			o      map[string]any
			err    error
		)
		if i%2 == 0 {
			status, _, err = call("GET", "/v1/products/"+product, key, nil)
			record(start, status, err)
		} else {
			status, o, err = call("POST", "/v1/orders", key, map[string]any{"customer_id": "c", "items": []map[string]any{{"product_id": product, "quantity": 1}}})
			record(start, status, err)
			if err == nil && status == 201 {
				start = time.Now()
				status, _, err = call("POST", "/v1/payments", key, map[string]any{"order_id": o["id"], "amount": 100, "currency": "EUR", "payment_method": "card"})
				record(start, status, err)
			}
		}
		return err == nil // an error: the listener is closed, the server is shutting down
	})
	time.Sleep(time.Second) // the point: let the load run before the signal
	sigterm := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the point: SIGTERM lands while requests are in flight; readiness must fail at once
	if status, _, err := call("GET", "/readyz", "", nil); err != nil || status != 503 {
		t.Errorf("readyz while draining: got %d %v, want 503", status, err)
	}
	s.waitExit(t)
	stopLoad()

	var before, served int
	for _, o := range outcomes {
		if !o.start.Before(sigterm) {
			continue
		}
		before++
		if o.err != nil || o.status >= 500 {
			t.Errorf("a request started before SIGTERM failed: status %d, %v", o.status, o.err)
			continue
		}
		served++
	}
	if before < 10 {
		t.Fatalf("only %d requests before SIGTERM: the load proves nothing", before)
	}

	// No usage lost: every /v1 request answered (and not refused by a
	// limit) is in usage_counters once the process has exited.
	want := int64(1) // the product created before the load
	for _, o := range outcomes {
		if o.err == nil && o.status != http.StatusTooManyRequests {
			want++
		}
	}
	if got := apiRequests(t, env, tenantID); got != want {
		t.Errorf("api_requests after shutdown: got %d, want %d (every served request counted once)", got, want)
	}
	t.Logf("%d requests started before SIGTERM, all %d served; %d requests in total", before, served, len(outcomes))
}

// shutdownServer is a real `tenantd serve` process started by a test.
type shutdownServer struct {
	logs        *apptest.SyncBuffer
	cmd         *exec.Cmd
	exited      chan error
	client      *apptest.Client
	operatorKey string
}

// startShutdownServer starts `bin serve` on the package's database and the Redis at
// redisURL, and waits until /readyz answers 200.
func startShutdownServer(t *testing.T, bin string, env *testenv.Env, redisURL string) *shutdownServer {
	t.Helper()
	return startServe(t, bin, 15*time.Second, operatorKey, "DATABASE_URL="+env.AppURL, "WORKER_DATABASE_URL="+env.WorkerURL, "REDIS_URL="+redisURL,
		"SHUTDOWN_DRAIN_DELAY=500ms", "SHUTDOWN_TIMEOUT=10s", "PAYMENT_GATEWAY_LATENCY=300ms", "LOG_LEVEL=warn")
}

// startServe starts `bin serve` with the operator key on a free loopback
// port with the environment vars added to this process's, talks to it with
// a client of the given timeout, and waits until /readyz answers 200. The
// process is killed when the test ends, if it still runs.
func startServe(t *testing.T, bin string, clientTimeout time.Duration, opKey string, vars ...string) *shutdownServer {
	t.Helper()
	addr := apptest.FreeAddr(t)
	s := &shutdownServer{logs: &apptest.SyncBuffer{}, exited: make(chan error, 1), operatorKey: opKey,
		client: apptest.NewURLClient(t, "http://"+addr, &http.Client{Timeout: clientTimeout})}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = append(append(os.Environ(), "HTTP_ADDR="+addr, "PLATFORM_API_KEY="+opKey), vars...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill() //nolint:errcheck // best effort after a failed test
			<-s.exited
		}
	})
	apptest.WaitReady(t, "http://"+addr, 30*time.Second, s.exited, s.logs.String)
	return s
}

// call sends one request with key as bearer credential and decodes the
// answer's JSON object, if any.
func (s *shutdownServer) call(method, path, key string, body any) (int, map[string]any, error) {
	resp, err := s.client.Try(apptest.Request{Method: method, Path: path, Key: key, Body: body})
	if err != nil {
		return 0, nil, err
	}
	var m map[string]any
	json.Unmarshal(resp.Body, &m) //nolint:errcheck // some answers have no body
	return resp.Status, m, nil
}

// createTenant creates a tenant on the enterprise plan, with a slug made
// from prefix, through the operator routes (which are not metered) and
// returns its id and admin API key.
func (s *shutdownServer) createTenant(t *testing.T, prefix string) (uuid.UUID, string) {
	t.Helper()
	status, tn, err := s.call("POST", "/admin/v1/tenants", s.operatorKey,
		map[string]any{"slug": apptest.Slug(prefix), "name": prefix, "plan": "enterprise"})
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create tenant: %d %v\n%s", status, err, s.logs)
	}
	return uuid.MustParse(tn["id"].(string)), tn["admin_api_key"].(string)
}

// createProduct creates a product in EUR at 100 with the given stock, one
// metered request, and returns its id.
func (s *shutdownServer) createProduct(t *testing.T, key, sku string, stock int) string {
	t.Helper()
	status, p, err := s.call("POST", "/v1/products", key, map[string]any{"sku": sku, "name": sku, "price": 100, "currency": "EUR", "stock": stock})
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create product: %d %v\n%s", status, err, s.logs)
	}
	return p["id"].(string)
}

// waitExit waits for the process to exit after SIGTERM and fails unless it
// exited 0 within 20s.
func (s *shutdownServer) waitExit(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.exited:
		s.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("tenantd exited with %v, want 0\n%s", err, s.logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("tenantd did not exit within 20s of SIGTERM\n%s", s.logs)
	}
}

// apiRequests reads the tenant's api_requests usage from PostgreSQL.
func apiRequests(t *testing.T, env *testenv.Env, tenantID uuid.UUID) int64 {
	t.Helper()
	owner, err := db.Open(context.Background(), env.OwnerURL, db.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	var got int64
	err = owner.WithTenant(context.Background(), tenantID, func(tx *gorm.DB) error {
		// The owner reads every tenant's counters (policy owner_billing):
		// name the tenant.
		return tx.Raw("SELECT coalesce(sum(quantity), 0) FROM usage_counters WHERE tenant_id = ? AND meter = 'api_requests'",
			tenantID).Scan(&got).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
