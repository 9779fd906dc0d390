package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

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
// readiness fails at once, every request that had started completes, and
// the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	env := testenv.Get(t)
	bin := filepath.Join(t.TempDir(), "tenantd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	base := "http://" + addr

	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+env.AppURL, "REDIS_URL="+env.RedisURL, "HTTP_ADDR="+addr,
		"PLATFORM_API_KEY="+operatorKey, "SHUTDOWN_DRAIN_DELAY=500ms", "SHUTDOWN_TIMEOUT=10s",
		"PAYMENT_GATEWAY_LATENCY=300ms", "LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill() //nolint:errcheck // best effort after a failed test
		}
	})

	client := &http.Client{Timeout: 15 * time.Second}
	call := func(method, path, key string, body any) (int, map[string]any, error) {
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, base+path, r)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m) //nolint:errcheck // some answers have no body
		return resp.StatusCode, m, nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _, err := call("GET", "/readyz", "", nil)
		if err == nil && status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenantd did not become ready: %v %d\n%s", err, status, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	status, tn, err := call("POST", "/admin/v1/tenants", operatorKey, map[string]any{"slug": fmt.Sprintf("shut-%d", time.Now().UnixNano()%1e9), "name": "Shutdown", "plan": "enterprise"})
	if err != nil || status != 201 {
		t.Fatalf("create tenant: %d %v", status, err)
	}
	key := tn["admin_api_key"].(string)
	status, p, err := call("POST", "/v1/products", key, map[string]any{"sku": "S-1", "name": "S", "price": 100, "currency": "EUR", "stock": 100000})
	if err != nil || status != 201 {
		t.Fatalf("create product: %d %v", status, err)
	}
	product := p["id"].(string)

	var mu sync.Mutex
	var outcomes []outcome
	record := func(start time.Time, status int, err error) {
		mu.Lock()
		outcomes = append(outcomes, outcome{start, status, err})
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				if i%2 == 0 {
					status, _, err := call("GET", "/v1/products/"+product, key, nil)
					record(start, status, err)
				} else {
					status, o, err := call("POST", "/v1/orders", key, map[string]any{"customer_id": "c", "items": []map[string]any{{"product_id": product, "quantity": 1}}})
					record(start, status, err)
					if err == nil && status == 201 {
						start = time.Now()
						status, _, err = call("POST", "/v1/payments", key, map[string]any{"order_id": o["id"], "amount": 100, "currency": "EUR", "payment_method": "card"})
						record(start, status, err)
					}
				}
				if err != nil {
					return // the listener is closed: the server is shutting down
				}
			}
		})
	}
	time.Sleep(time.Second)
	sigterm := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if status, _, err := call("GET", "/readyz", "", nil); err != nil || status != 503 {
		t.Errorf("readyz while draining: got %d %v, want 503", status, err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("tenantd exited with %v, want 0\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("tenantd did not exit within 20s of SIGTERM\n%s", logs.String())
	}
	close(stop)
	wg.Wait()

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
	owner, err := db.Open(context.Background(), env.OwnerURL, db.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	var got int64
	err = owner.WithTenant(context.Background(), uuid.MustParse(tn["id"].(string)), func(tx *gorm.DB) error {
		return tx.Raw("SELECT coalesce(sum(quantity), 0) FROM usage_counters WHERE meter = 'api_requests'").Scan(&got).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("api_requests after shutdown: got %d, want %d (every served request counted once)", got, want)
	}
	t.Logf("%d requests started before SIGTERM, all %d served; %d requests in total", before, served, len(outcomes))
}
