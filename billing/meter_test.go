package billing_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

// TestCountsExactWithRacingFlushers serves concurrent requests of several
// tenants on two replicas while both flush over and over (besides their
// own flush every second), writing the same tenants' rows: after a final
// flush each tenant's api_requests equals the requests served to it, and
// Redis holds no usage key.
func TestCountsExactWithRacingFlushers(t *testing.T) {
	r := newMeterRig(t)
	ctx := t.Context()
	tenants := make([]uuid.UUID, 5)
	for i := range tenants {
		tenants[i] = testenv.NewTenant(t, testenv.WithPlan("free")).ID
	}
	replicas := []*billing.Counter{
		billing.NewCounter(r.rdb, r.app, r.log, time.Now),
		billing.NewCounter(r.rdb, r.app, r.log, time.Now),
	}
	engines := make([]http.Handler, len(replicas))
	for i, c := range replicas {
		runMeterCounter(t, c)
		engines[i] = meterEngine(middleware.Metering(c))
	}

	var flushes atomic.Int64
	stopFlushers := apptest.Loop(len(replicas), func(w, _ int) bool {
		if err := replicas[w].Flush(ctx); err != nil {
			t.Errorf("flush during load: %v", err)
			return false
		}
		flushes.Add(1)
		time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond) // the point: jitter between requests
		return true
	})

	const workers, perWorker = 8, 150
	var served [5]atomic.Int64
	var load sync.WaitGroup
	for w := range workers {
		load.Go(func() {
			for i := range perWorker {
				ti := rand.IntN(len(tenants))
				path := "/v1/things/x"
				if i%7 == 0 {
					path = "/v1/things/missing" // a 4xx counts too
				}
				resp := meterGet(engines[(w+i)%len(engines)], tenants[ti], "free", path)
				if resp.Code != http.StatusOK && resp.Code != http.StatusNotFound {
					t.Errorf("got status %d, want 200 or 404", resp.Code)
				}
				served[ti].Add(1)
				time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond) // the point: jitter between requests
			}
		})
	}
	load.Wait()
	stopFlushers()
	for _, c := range replicas {
		if err := c.Flush(ctx); err != nil {
			t.Fatalf("final flush: %v", err)
		}
	}
	t.Logf("%d flushes raced the load", flushes.Load())
	if flushes.Load() < 20 {
		t.Errorf("got %d flushes during the load, want several racing ones", flushes.Load())
	}
	total := r.wantFlushed(t, tenants, served[:])
	if total != workers*perWorker {
		t.Fatalf("served %d requests, want %d", total, workers*perWorker)
	}
}

// TestRedisLostUnderLoad serves requests of three tenants while Redis
// loses everything it holds, twice: FLUSHALL, and a stop and a restart
// without persistence, as a Redis without AOF
// or snapshots comes back. No request fails because of it (rate limits
// fail open), Redis never holds a usage key, PostgreSQL has the counts
// within seconds throughout, and after a final flush every answered
// request is counted exactly once.
func TestRedisLostUnderLoad(t *testing.T) {
	r := newMeterRig(t)
	rs := r.privateRedis(t)
	ctx := t.Context()
	tenants := []uuid.UUID{testenv.NewTenant(t, testenv.WithPlan("enterprise")).ID, testenv.NewTenant(t, testenv.WithPlan("enterprise")).ID, testenv.NewTenant(t, testenv.WithPlan("enterprise")).ID}
	counter := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
	runMeterCounter(t, counter)
	limits := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: true, Counter: counter})
	e := meterEngine(middleware.Metering(counter), middleware.RateLimit(rateLimiter{limits}), middleware.Quota(limits))

	var served [3]atomic.Int64
	var failed atomic.Int64
	stopLoad := apptest.Loop(6, func(w, i int) bool {
		ti := (w + i) % len(tenants)
		resp := meterGet(e, tenants[ti], "enterprise", "/v1/things/x")
		served[ti].Add(1)
		if resp.Code != http.StatusOK {
			if failed.Add(1) <= 5 {
				t.Errorf("got status %d %s, want 200 whatever Redis does", resp.Code, resp.Body)
			}
		}
		time.Sleep(3 * time.Millisecond) // the point: pace the load
		return true
	})
	// counted waits until PostgreSQL holds at least what was served to
	// the first tenant a moment ago: usage reaches it within seconds.
	counted := func(what string) {
		t.Helper()
		want := served[0].Load()
		start := time.Now()
		testenv.Eventually(t, 5*time.Second, func() (bool, string) { return r.requests(t, tenants[0]) >= want, what })
		t.Logf("%s: %d requests in PostgreSQL after %s", what, want, time.Since(start).Round(time.Millisecond))
	}

	time.Sleep(time.Second) // the point: serve load for a while before Redis loses its data
	counted("before Redis lost its data")
	if err := r.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	time.Sleep(time.Second) // the point: serve load against the emptied Redis
	counted("after FLUSHALL")
	rs.Stop()
	time.Sleep(1500 * time.Millisecond) // the point: serve load while Redis is down
	counted("while Redis is down")
	// testenv's Redis runs without persistence: it comes back empty.
	if err := rs.Start(ctx); err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	time.Sleep(time.Second) // the point: serve load against the restarted Redis
	counted("after Redis restarted empty")
	stopLoad()

	if err := counter.Flush(ctx); err != nil {
		t.Fatalf("final flush: %v", err)
	}
	total := r.wantFlushed(t, tenants, served[:])
	t.Logf("served %d requests; %d rate limit decisions without Redis", total, limits.RedisErrors())
}

// TestMeteringCounts checks what Metering counts: authenticated requests
// of any status, not the 429s the rate limit answered, not requests
// without a tenant.
func TestMeteringCounts(t *testing.T) {
	r := newMeterRig(t)
	ctx := t.Context()
	plan := r.plan(t, 1, 3, nil)
	id := testenv.NewTenant(t, testenv.WithPlan(plan)).ID
	counter := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
	limits := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: true, Counter: counter})
	e := meterEngine(middleware.Metering(counter), middleware.RateLimit(rateLimiter{limits}), middleware.Quota(limits))

	statuses := map[int]int64{}
	for i := range 10 {
		path := "/v1/things/x"
		if i == 1 {
			path = "/v1/things/missing"
		}
		resp := meterGet(e, id, plan, path)
		statuses[resp.Code]++
	}
	if statuses[http.StatusTooManyRequests] == 0 || statuses[http.StatusNotFound] != 1 {
		t.Fatalf("got statuses %v, want one 404 and some 429s (burst 3)", statuses)
	}
	anon := httpTestRequest(e, "/v1/things/x")
	if anon != http.StatusOK {
		t.Fatalf("got status %d without a principal, want 200", anon)
	}
	if err := counter.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if got, want := r.requests(t, id), 10-statuses[http.StatusTooManyRequests]; got != want {
		t.Errorf("got api_requests %d, want %d (statuses %v)", got, want, statuses)
	}
}

func httpTestRequest(e http.Handler, path string) int {
	w := meterGet(e, uuid.Nil, "", path)
	return w.Code
}

// TestUsedInPeriod sums counts and takes the highest hour of gauges,
// within the period asked for only.
func TestUsedInPeriod(t *testing.T) {
	r := newMeterRig(t)
	id := testenv.NewTenant(t, testenv.WithPlan("free")).ID
	rows := []struct {
		meter, currency, hour, period string
		n                             int64
	}{
		{billing.MeterAPIRequests, "", "2031-03-01T00:00:00Z", "2031-03", 5},
		{billing.MeterAPIRequests, "", "2031-03-31T23:00:00Z", "2031-03", 7},
		{billing.MeterAPIRequests, "", "2031-02-28T23:00:00Z", "2031-03", 1}, // an adjustment
		{billing.MeterAPIRequests, "", "2031-04-01T00:00:00Z", "2031-04", 100},
		{billing.MeterPaymentVolume, "EUR", "2031-03-02T10:00:00Z", "2031-03", 2500},
		{billing.MeterPaymentVolume, "USD", "2031-03-02T10:00:00Z", "2031-03", 700},
		{billing.MeterActiveProducts, "", "2031-03-02T10:00:00Z", "2031-03", 40},
		{billing.MeterActiveProducts, "", "2031-03-09T10:00:00Z", "2031-03", 45},
		{billing.MeterActiveProducts, "", "2031-03-20T10:00:00Z", "2031-03", 12},
	}
	for _, row := range rows {
		insertCount(t, r.app, id, row.meter, row.currency, row.hour, row.period, row.n)
	}
	var got map[billing.MeterKey]int64
	err := r.app.WithTenant(t.Context(), id, func(tx *gorm.DB) error {
		var err error
		got, err = billing.UsedInPeriod(t.Context(), tx, "2031-03")
		return err
	})
	if err != nil {
		t.Fatalf("UsedInPeriod: %v", err)
	}
	want := map[billing.MeterKey]int64{
		{Meter: billing.MeterAPIRequests}:                    13,
		{Meter: billing.MeterPaymentVolume, Currency: "EUR"}: 2500,
		{Meter: billing.MeterPaymentVolume, Currency: "USD"}: 700,
		{Meter: billing.MeterActiveProducts}:                 45,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestActiveProductsSample records the number of products as the hour's
// gauge, keeping the hour's highest sample.
func TestActiveProductsSample(t *testing.T) {
	r := newMeterRig(t)
	ctx := t.Context()
	clock := testenv.NewClock(time.Date(2031, 5, 10, 14, 20, 0, 0, time.UTC))
	counter := billing.NewCounter(r.rdb, r.app, r.log, clock.Now)
	a, b := testenv.NewTenant(t, testenv.WithPlan("free")).ID, testenv.NewTenant(t, testenv.WithPlan("free")).ID
	addProducts := func(id uuid.UUID, n int) []uuid.UUID {
		var ids []uuid.UUID
		err := r.app.WithTenant(ctx, id, func(tx *gorm.DB) error {
			for range n {
				pid := uuid.New()
				ids = append(ids, pid)
				if err := tx.Exec(`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
					VALUES (?, ?, ?, 'P', 100, 'EUR', 1)`, id, pid, "sku-"+pid.String()[:8]).Error; err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("add products: %v", err)
		}
		return ids
	}
	gauge := func(id uuid.UUID, hour time.Time) int64 {
		return testenv.Query[int64](t, r.app, id, `SELECT coalesce(max(quantity), 0) FROM usage_counters WHERE meter = ? AND hour = ?`,
			billing.MeterActiveProducts, hour)
	}
	sample := func() {
		t.Helper()
		if err := counter.SampleActiveProducts(ctx); err != nil {
			t.Fatalf("sample: %v", err)
		}
	}
	h1 := time.Date(2031, 5, 10, 14, 0, 0, 0, time.UTC)
	aIDs := addProducts(a, 3)
	addProducts(b, 1)
	sample()
	if got := gauge(a, h1); got != 3 {
		t.Errorf("got gauge %d, want 3", got)
	}
	if got := gauge(b, h1); got != 1 {
		t.Errorf("other tenant: got gauge %d, want 1", got)
	}
	addProducts(a, 2)
	sample()
	testenv.Exec(t, r.app, a, "DELETE FROM products WHERE id IN ?", aIDs)
	sample()
	if got := gauge(a, h1); got != 5 {
		t.Errorf("after 5 and then 2 products: got the hour's gauge %d, want its highest sample 5", got)
	}
	clock.Set(h1.Add(time.Hour))
	sample()
	if got := gauge(a, h1.Add(time.Hour)); got != 2 {
		t.Errorf("next hour: got gauge %d, want 2", got)
	}
}
