package app_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/testenv"
)

// countingServer is a tenantd server whose database pool counts the API
// key lookups it runs (auth_api_key_lookup), so a test can tell which
// requests reached the database.
type countingServer struct {
	*apptest.Server
	lookups *atomic.Int64
}

// countKeyLookups counts, on every statement d runs, those that call
// auth_api_key_lookup.
func countKeyLookups(t *testing.T, d *db.DB) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	count := func(tx *gorm.DB) {
		if strings.Contains(tx.Statement.SQL.String(), "auth_api_key_lookup") {
			n.Add(1)
		}
	}
	// Raw(…).Scan runs the row callbacks; Find and Exec the others.
	cb := d.Unscoped(context.Background()).Callback()
	for _, err := range []error{
		cb.Row().After("gorm:row").Register("test:count_key_lookups", count),
		cb.Query().After("gorm:query").Register("test:count_key_lookups", count),
		cb.Raw().After("gorm:raw").Register("test:count_key_lookups", count),
	} {
		if err != nil {
			t.Fatalf("register lookup counter: %v", err)
		}
	}
	return &n
}

// newCountingServer starts a server with apptest.New whose pool counts
// key lookups.
func newCountingServer(t *testing.T) countingServer {
	t.Helper()
	var lookups *atomic.Int64
	s := apptest.New(t, apptest.Options{MaxConns: 8, OnDB: func(d *db.DB) { lookups = countKeyLookups(t, d) }})
	return countingServer{Server: s, lookups: lookups}
}

// loopbackHTTP returns an HTTP client whose connections come from addr, an
// address of 127.0.0.0/8 (all of it is loopback on Linux), so that one
// test server sees several client addresses.
func loopbackHTTP(t *testing.T, addr string) *http.Client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 8}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// randomLoopback returns an address of 127.0.0.0/8 other than 127.0.0.1,
// different in every run: failure budgets live in the package's Redis
// and outlast a test (-count=3 runs it three times against one Redis).
func randomLoopback(t *testing.T) string {
	t.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(1<<24-512))
	if err != nil {
		t.Fatal(err)
	}
	v := n.Int64() + 256 // never 127.0.0.x, so never 127.0.0.1
	return fmt.Sprintf("127.%d.%d.%d", v>>16&0xff, v>>8&0xff, max(v&0xff, 1))
}

// getTenant sends GET /v1/tenant with key through c.
func getTenant(t *testing.T, c *apptest.Client, key string) apptest.Response {
	t.Helper()
	resp, err := c.Try(apptest.Request{Method: http.MethodGet, Path: "/v1/tenant", Key: key})
	if err != nil {
		t.Fatalf("GET /v1/tenant: %v", err)
	}
	return resp
}

// randomKey returns a well-formed API key that no tenant holds.
func randomKey(t *testing.T) string {
	t.Helper()
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := make([]byte, 16+52)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "tk_" + string(b[:16]) + "_" + string(b[16:])
}

// TestAuthThrottle (finding L3): random well-formed keys from one address
// are answered 401 until the address's failure budget is used up, then 429
// rate_limited with Retry-After without any database lookup; the database
// sees at most the budget (plus what refills meanwhile) of lookups. A good
// key from the same address still works, another address is unaffected,
// another replica refuses the address too (the budget lives in Redis), and
// an unknown prefix is looked up once (negative cache).
func TestAuthThrottle(t *testing.T) {
	srv := newCountingServer(t)
	tn := srv.NewTenant("throttle", "pro") // from 127.0.0.1
	tenantID, adminKey := tn.ID, tn.Key
	if r := getTenant(t, srv.Client, adminKey); r.Status != http.StatusOK {
		t.Fatalf("admin key: got %d %s, want 200", r.Status, r.Body)
	}
	budget := auth.DefaultFailureLimit.Burst
	attackerHTTP := loopbackHTTP(t, randomLoopback(t))
	attacker := apptest.NewURLClient(t, srv.URL, attackerHTTP)

	t.Run("random keys from one address", func(t *testing.T) {
		before := srv.lookups.Load()
		start := time.Now()
		var unauthorized, throttled int
		for i := range budget + 40 {
			r := getTenant(t, attacker, randomKey(t))
			switch r.Status {
			case http.StatusUnauthorized:
				unauthorized++
			case http.StatusTooManyRequests:
				throttled++
				if got := r.Header.Get("Content-Type"); got != "application/problem+json" {
					t.Errorf("429: got Content-Type %q, want application/problem+json", got)
				}
				if r.Code() != string(fault.RateLimited) {
					t.Errorf("429: got code %q, want rate_limited", r.Code())
				}
				if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
					t.Errorf("429: got Retry-After %q, want whole seconds ≥ 1", r.Header.Get("Retry-After"))
				}
			default:
				t.Fatalf("request %d: got %d %s, want 401 or 429", i+1, r.Status, r.Body)
			}
		}
		elapsed := time.Since(start)
		looked := srv.lookups.Load() - before
		refills := int64(elapsed/auth.DefaultFailureLimit.Every) + 1
		t.Logf("%d requests in %s: %d answered 401, %d answered 429, %d key lookups", budget+40, elapsed.Round(time.Millisecond), unauthorized, throttled, looked)
		if unauthorized < budget {
			t.Errorf("got %d 401s, want the whole budget of %d", unauthorized, budget)
		}
		if throttled == 0 {
			t.Fatalf("got no 429 after %d failures, want the address throttled after %d", unauthorized, budget)
		}
		if looked > int64(budget)+refills {
			t.Errorf("got %d key lookups, want at most the budget %d plus %d refilled in %s", looked, budget, refills, elapsed)
		}
		if looked != int64(unauthorized) {
			t.Errorf("got %d key lookups for %d 401s, want one each and none for a 429", looked, unauthorized)
		}
	})

	// rethrottle spends what refilled since (one failure a second: a slow
	// machine may take seconds between the steps below) until the address
	// is refused again.
	rethrottle := func(t *testing.T) {
		t.Helper()
		for range 10 {
			if r := getTenant(t, attacker, randomKey(t)); r.Status == http.StatusTooManyRequests {
				return
			}
		}
		t.Fatal("the address is not throttled again after 10 more failures")
	}

	t.Run("a good key from the throttled address still works", func(t *testing.T) {
		rethrottle(t)
		if r := getTenant(t, attacker, adminKey); r.Status != http.StatusOK || !strings.Contains(string(r.Body), tenantID) {
			t.Fatalf("admin key from the throttled address: got %d %s, want 200", r.Status, r.Body)
		}
		// A key issued on this replica (from 127.0.0.1) is trusted before
		// its first use.
		secret := srv.CreateKey(adminKey, "viewer")
		if r := getTenant(t, attacker, secret); r.Status != http.StatusOK {
			t.Fatalf("new key from the throttled address: got %d %s, want 200", r.Status, r.Body)
		}
	})

	t.Run("another address is unaffected", func(t *testing.T) {
		other := apptest.NewURLClient(t, srv.URL, loopbackHTTP(t, randomLoopback(t)))
		if r := getTenant(t, other, randomKey(t)); r.Status != http.StatusUnauthorized {
			t.Fatalf("random key from another address: got %d %s, want 401", r.Status, r.Body)
		}
		if r := getTenant(t, other, adminKey); r.Status != http.StatusOK {
			t.Fatalf("admin key from another address: got %d %s, want 200", r.Status, r.Body)
		}
	})

	t.Run("another replica refuses the address too", func(t *testing.T) {
		replica := newCountingServer(t)
		rethrottle(t)
		if r := getTenant(t, apptest.NewURLClient(t, replica.URL, attackerHTTP), randomKey(t)); r.Status != http.StatusTooManyRequests {
			t.Fatalf("random key on another replica: got %d %s, want 429", r.Status, r.Body)
		}
		if n := replica.lookups.Load(); n != 0 {
			t.Errorf("other replica: got %d key lookups, want none", n)
		}
	})

	t.Run("an unknown prefix is looked up once", func(t *testing.T) {
		c := apptest.NewURLClient(t, srv.URL, loopbackHTTP(t, randomLoopback(t)))
		key := randomKey(t)
		before := srv.lookups.Load()
		for range 3 {
			if r := getTenant(t, c, key); r.Status != http.StatusUnauthorized {
				t.Fatalf("unknown key: got %d %s, want 401", r.Status, r.Body)
			}
		}
		if n := srv.lookups.Load() - before; n != 1 {
			t.Errorf("got %d lookups for one unknown prefix sent three times, want 1", n)
		}
	})
}

// TestAuthThrottleWithoutRedis: with Redis unreachable the budget is kept
// in memory, per replica: the same limit, the same 429 before any lookup.
func TestAuthThrottleWithoutRedis(t *testing.T) {
	env := testenv.Get(t)
	d := env.OpenDB(t, 2)
	lookups := countKeyLookups(t, d)
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	limit := auth.FailureLimit{Burst: 5, Every: time.Minute}
	svc := auth.NewService(d, dead, 10*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), auth.WithFailureLimit(limit))
	ctx := context.Background()
	for i := range limit.Burst + 5 {
		_, err := svc.AuthenticateFrom(ctx, "203.0.113.7", randomKey(t))
		fe, ok := fault.As(err)
		if !ok {
			t.Fatalf("attempt %d: got %v, want a fault", i+1, err)
		}
		want := fault.Unauthenticated
		if i >= limit.Burst {
			want = fault.RateLimited
		}
		if fe.Code != want {
			t.Fatalf("attempt %d: got %s, want %s", i+1, fe.Code, want)
		}
		if want == fault.RateLimited && fe.RetryAfter < time.Second {
			t.Errorf("attempt %d: got RetryAfter %v, want at least a second", i+1, fe.RetryAfter)
		}
	}
	if n := lookups.Load(); n != int64(limit.Burst) {
		t.Errorf("got %d key lookups, want %d", n, limit.Burst)
	}
	// IPv6 addresses of one /64 share a budget; another /64 has its own.
	for i := range limit.Burst {
		if _, err := svc.AuthenticateFrom(ctx, fmt.Sprintf("2001:db8:1:2::%x", i+1), randomKey(t)); fault.CodeOf(err) != fault.Unauthenticated {
			t.Fatalf("IPv6 attempt %d: got %v, want unauthenticated", i+1, err)
		}
	}
	if _, err := svc.AuthenticateFrom(ctx, "2001:db8:1:2:ffff::1", randomKey(t)); fault.CodeOf(err) != fault.RateLimited {
		t.Errorf("same /64: got %v, want rate_limited", err)
	}
	if _, err := svc.AuthenticateFrom(ctx, "2001:db8:1:3::1", randomKey(t)); fault.CodeOf(err) != fault.Unauthenticated {
		t.Errorf("another /64: got %v, want unauthenticated", err)
	}
	if _, err := svc.AuthenticateFrom(ctx, "198.51.100.1", randomKey(t)); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("another address: got %v, want unauthenticated", err)
	}
}
