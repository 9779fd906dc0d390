package billing_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

// rateHeaders returns a response's RateLimit-Limit, -Remaining, -Reset
// and Retry-After ("" when absent).
func rateHeaders(t *testing.T, w *httptest.ResponseRecorder) (limit, remaining, reset int, retryAfter string) {
	t.Helper()
	num := func(name string) int {
		v := w.Header().Get(name)
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("got %s %q, want a number (status %d)", name, v, w.Code)
		}
		return n
	}
	return num("RateLimit-Limit"), num("RateLimit-Remaining"), num("RateLimit-Reset"), w.Header().Get("Retry-After")
}

// TestRateLimitHeaders walks a tenant through its burst into 429s, checks
// the headers of each response, and changes its plan, which the next
// request obeys.
func TestRateLimitHeaders(t *testing.T) {
	r := newMeterRig(t)
	slow := r.plan(t, 1, 5, nil)
	fast := r.plan(t, 50, 100, nil)
	id := testenv.NewTenant(t, testenv.WithPlan(slow)).ID
	counter := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
	limits := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: true, Counter: counter})
	e := meterEngine(middleware.Metering(counter), middleware.RateLimit(rateLimiter{limits}), middleware.Quota(limits))

	for i := range 5 {
		w := meterGet(e, id, slow, "/v1/things/x")
		if w.Code != http.StatusOK {
			t.Fatalf("request %d: got status %d, want 200 within the burst of 5", i+1, w.Code)
		}
		limit, remaining, reset, retry := rateHeaders(t, w)
		if limit != 5 || remaining != 4-i || reset < 1 || reset > 5 || retry != "" {
			t.Errorf("request %d: got limit %d remaining %d reset %d retry-after %q, want 5, %d, 1..5, none",
				i+1, limit, remaining, reset, retry, 4-i)
		}
	}
	w := meterGet(e, id, slow, "/v1/things/x")
	if w.Code != http.StatusTooManyRequests || meterProblemCode(w) != "rate_limited" {
		t.Fatalf("got %d %s, want 429 rate_limited", w.Code, w.Body)
	}
	limit, remaining, reset, retry := rateHeaders(t, w)
	if limit != 5 || remaining != 0 || reset < 4 || reset > 5 || retry != "1" {
		t.Errorf("429: got limit %d remaining %d reset %d retry-after %q, want 5, 0, 4..5, 1", limit, remaining, reset, retry)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("got Content-Type %q, want application/problem+json", ct)
	}

	// An operator moves the tenant to a faster plan; its credential now
	// carries the new plan, and the very next request gets its limits.
	w = meterGet(e, id, fast, "/v1/things/x")
	if w.Code != http.StatusOK {
		t.Fatalf("after the plan change: got status %d, want 200", w.Code)
	}
	if limit, _, _, _ := rateHeaders(t, w); limit != 100 {
		t.Errorf("after the plan change: got RateLimit-Limit %d, want 100", limit)
	}
}

// latencies is a thread-safe list of durations.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// quantile returns the q-quantile (0 < q ≤ 1).
func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

// paced sends n requests of tenantID at about perSecond from workers
// goroutines, recording statuses and latencies.
func paced(e http.Handler, tenantID uuid.UUID, plan string, perSecond, n, workers int, lat *latencies, statuses *sync.Map) {
	interval := time.Second * time.Duration(workers) / time.Duration(perSecond)
	var wg sync.WaitGroup
	var sent atomic.Int64
	for w := range workers {
		wg.Go(func() {
			next := time.Now().Add(interval * time.Duration(w) / time.Duration(workers))
			for sent.Add(1) <= int64(n) {
				time.Sleep(time.Until(next)) // the point: pace the load at the plan's rate
				next = next.Add(interval)
				start := time.Now()
				resp := meterGet(e, tenantID, plan, "/v1/things/x")
				if lat != nil {
					lat.add(time.Since(start))
				}
				v, _ := statuses.LoadOrStore(resp.Code, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
				if resp.Code == http.StatusTooManyRequests {
					statuses.LoadOrStore("last429", resp)
				}
			}
		})
	}
	wg.Wait()
}

func countOf(m *sync.Map, code int) int64 {
	if v, ok := m.Load(code); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// TestNoisyNeighbour has a free tenant hammer at ten times its rate while a
// pro tenant works within its own: the free tenant gets 429s with correct
// headers and no more than its rate and burst allow; the pro tenant's
// success rate and latency are those it has alone.
func TestNoisyNeighbour(t *testing.T) {
	r := newMeterRig(t)
	free, pro := testenv.NewTenant(t, testenv.WithPlan("free")).ID, testenv.NewTenant(t, testenv.WithPlan("pro")).ID
	counter := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
	runMeterCounter(t, counter)
	limits := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: true, Counter: counter})
	e := meterEngine(middleware.Metering(counter), middleware.RateLimit(rateLimiter{limits}), middleware.Quota(limits))

	const proRate, proSeconds = 40, 3
	// The pro tenant alone.
	var alone latencies
	var aloneStatus sync.Map
	paced(e, pro, "pro", proRate, proRate*proSeconds, 4, &alone, &aloneStatus)

	// The same next to a free tenant (10/s, burst 20) sending 100/s.
	var noisy latencies
	var noisyStatus, freeStatus sync.Map
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() { paced(e, free, "free", 100, 100*proSeconds, 10, nil, &freeStatus) })
	wg.Go(func() { paced(e, pro, "pro", proRate, proRate*proSeconds, 4, &noisy, &noisyStatus) })
	wg.Wait()
	took := time.Since(start)

	if got := countOf(&aloneStatus, http.StatusOK); got != proRate*proSeconds {
		t.Fatalf("pro alone: got %d × 200, want all %d", got, proRate*proSeconds)
	}
	if got := countOf(&noisyStatus, http.StatusOK); got != proRate*proSeconds {
		t.Errorf("pro next to the noisy tenant: got %d × 200, want all %d", got, proRate*proSeconds)
	}
	allowed, refused := countOf(&freeStatus, http.StatusOK), countOf(&freeStatus, http.StatusTooManyRequests)
	if allowed+refused != 100*proSeconds {
		t.Errorf("free: got %d × 200 and %d × 429, want only those, %d in all", allowed, refused, 100*proSeconds)
	}
	// GCRA admits the burst and then the rate: 20 + 10/s.
	if most := int64(20 + 10*took.Seconds() + 2); allowed > most || allowed < 20+10*proSeconds/2 {
		t.Errorf("free: got %d requests through in %s, want about 20 + 10/s, at most %d", allowed, took.Round(time.Millisecond), most)
	}
	if v, ok := freeStatus.Load("last429"); ok {
		w := v.(*httptest.ResponseRecorder)
		limit, remaining, reset, retry := rateHeaders(t, w)
		if meterProblemCode(w) != "rate_limited" || limit != 20 || remaining != 0 || reset < 1 || reset > 2 || retry != "1" {
			t.Errorf("free 429: got code %s limit %d remaining %d reset %d retry-after %q, want rate_limited, 20, 0, 1..2, 1",
				meterProblemCode(w), limit, remaining, reset, retry)
		}
	} else {
		t.Error("free: got no 429")
	}
	p50a, p99a := alone.quantile(0.5), alone.quantile(0.99)
	p50n, p99n := noisy.quantile(0.5), noisy.quantile(0.99)
	t.Logf("pro latency alone p50 %s p99 %s; next to the noisy tenant p50 %s p99 %s; free %d allowed, %d refused in %s",
		p50a, p99a, p50n, p99n, allowed, refused, took.Round(time.Millisecond))
	if p50n > 2*p50a+2*time.Millisecond || p99n > 3*p99a+10*time.Millisecond {
		t.Errorf("pro latency next to the noisy tenant: p50 %s p99 %s, want close to alone: p50 %s p99 %s", p50n, p99n, p50a, p99a)
	}
}

// TestRateLimitRedisDown fails open (requests pass, with headers, and are
// metered) or closed (503, not metered) when Redis is down, and flushes
// the counts to PostgreSQL while Redis is still down.
func TestRateLimitRedisDown(t *testing.T) {
	r := newMeterRig(t)
	rs := r.privateRedis(t)
	ctx := t.Context()
	id := testenv.NewTenant(t, testenv.WithPlan("pro")).ID
	counter := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
	var hooked atomic.Int64
	open := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: true, Counter: counter,
		OnRedisError: func(bool) { hooked.Add(1) }})
	closed := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: false, Counter: counter})
	openEngine := meterEngine(middleware.Metering(counter), middleware.RateLimit(rateLimiter{open}), middleware.Quota(open))
	closedEngine := meterEngine(middleware.Metering(counter), middleware.RateLimit(rateLimiter{closed}), middleware.Quota(closed))
	// Both have the plan cached and the tenant's bucket used before Redis goes.
	for _, e := range []http.Handler{openEngine, closedEngine} {
		if w := meterGet(e, id, "pro", "/v1/things/x"); w.Code != http.StatusOK {
			t.Fatalf("got status %d before Redis stopped, want 200", w.Code)
		}
	}

	rs.Stop()
	// Outlive the tokens the replicas took (held at most a second).
	time.Sleep(1100 * time.Millisecond)
	const n = 20
	for i := range n {
		w := meterGet(openEngine, id, "pro", "/v1/things/x")
		if w.Code != http.StatusOK {
			t.Fatalf("fail open, request %d: got status %d %s, want 200", i, w.Code, w.Body)
		}
		if limit, _, _, _ := rateHeaders(t, w); limit != 200 {
			t.Errorf("fail open: got RateLimit-Limit %d, want 200", limit)
		}
		w = meterGet(closedEngine, id, "pro", "/v1/things/x")
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
			t.Fatalf("fail closed, request %d: got status %d Retry-After %q, want 503 and 1", i, w.Code, w.Header().Get("Retry-After"))
		}
	}
	if got := open.RedisErrors(); got < n || hooked.Load() != got {
		t.Errorf("got %d decisions without Redis (hook called %d times), want at least %d, the hook for each", got, hooked.Load(), n)
	}
	// Counts go to PostgreSQL without Redis: a shutdown flush now, with
	// Redis still down, writes them all.
	if err := counter.Flush(ctx); err != nil {
		t.Fatalf("flush with Redis down: %v", err)
	}
	if got := r.requests(t, id); got != 2+n {
		t.Errorf("got api_requests %d, want %d (the fail-closed 503s are not metered)", got, 2+n)
	}
}
