package billing_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

// quotaBody is the 429 quota_exceeded problem document.
type quotaBody struct {
	Code     string    `json:"code"`
	Status   int       `json:"status"`
	Detail   string    `json:"detail"`
	Meter    string    `json:"meter"`
	Limit    int64     `json:"limit"`
	Used     int64     `json:"used"`
	ResetsAt time.Time `json:"resets_at"`
}

func quotaOf(t *testing.T, w *httptest.ResponseRecorder) quotaBody {
	t.Helper()
	var b quotaBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("decode %s: %v", w.Body, err)
	}
	return b
}

// TestQuotaExhaustionAndReset uses up a hard api_requests quota at the end
// of a month, checks the refusal (status, body, headers, not metered) on
// this replica and on another one, and sees the quota reset when the clock
// passes into the next month.
func TestQuotaExhaustionAndReset(t *testing.T) {
	r := newMeterRig(t)
	ctx := t.Context()
	plan := r.plan(t, 1000, 1000, map[string]testMeter{billing.MeterAPIRequests: {included: 5, hard: true}})
	id := testenv.NewTenant(t, testenv.WithPlan(plan)).ID
	clock := testenv.NewClock(time.Date(2031, 1, 31, 23, 59, 30, 0, time.UTC))
	counter := billing.NewCounter(r.rdb, r.app, r.log, clock.Now)
	limits := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: true, Now: clock.Now, Counter: counter})
	e := meterEngine(middleware.Metering(counter), middleware.RateLimit(rateLimiter{limits}), middleware.Quota(limits))

	for i := range 5 {
		if w := meterGet(e, id, plan, "/v1/things/x"); w.Code != http.StatusOK {
			t.Fatalf("request %d: got status %d %s, want 200 within the quota of 5", i+1, w.Code, w.Body)
		}
	}
	resets := time.Date(2031, 2, 1, 0, 0, 0, 0, time.UTC)
	check := func(t *testing.T, w *httptest.ResponseRecorder, used int64) {
		t.Helper()
		if w.Code != http.StatusTooManyRequests {
			t.Fatalf("got status %d %s, want 429", w.Code, w.Body)
		}
		b := quotaOf(t, w)
		if b.Code != "quota_exceeded" || b.Status != 429 || b.Meter != billing.MeterAPIRequests || b.Limit != 5 ||
			b.Used != used || !b.ResetsAt.Equal(resets) {
			t.Errorf("got %+v, want quota_exceeded of api_requests, limit 5, used %d, resets at %s", b, used, resets)
		}
		for _, want := range []string{"api_requests", "5", "2031-02-01T00:00:00Z"} {
			if !strings.Contains(b.Detail, want) {
				t.Errorf("got detail %q, want it to name %s", b.Detail, want)
			}
		}
		if got := w.Header().Get("Retry-After"); got != "30" {
			t.Errorf("got Retry-After %q, want 30 (seconds to the period's end)", got)
		}
		if w.Header().Get("RateLimit-Limit") == "" {
			t.Error("got no RateLimit-Limit on the 429")
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("got Content-Type %q, want application/problem+json", ct)
		}
	}
	check(t, meterGet(e, id, plan, "/v1/things/x"), 5)
	check(t, meterGet(e, id, plan, "/v1/things/x"), 5)

	// Another replica reads the usage from PostgreSQL, once this replica
	// flushed it (Run does every second).
	if err := counter.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	other := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: true, Now: clock.Now})
	otherEngine := meterEngine(middleware.Metering(counter), middleware.RateLimit(rateLimiter{other}), middleware.Quota(other))
	check(t, meterGet(otherEngine, id, plan, "/v1/things/x"), 5)
	if err := counter.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if got := r.requests(t, id); got != 5 {
		t.Errorf("got api_requests %d, want 5: refused requests are not metered", got)
	}
	third := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: true, Now: clock.Now})
	check(t, meterGet(meterEngine(middleware.RateLimit(rateLimiter{third}), middleware.Quota(third)), id, plan, "/v1/things/x"), 5)

	// A new month: the quota starts again, on both replicas.
	clock.Set(resets.Add(time.Second))
	for i := range 5 {
		eng := e
		if i%2 == 1 {
			eng = otherEngine
		}
		if w := meterGet(eng, id, plan, "/v1/things/x"); w.Code != http.StatusOK {
			t.Fatalf("February request %d: got status %d %s, want 200", i+1, w.Code, w.Body)
		}
	}
	// Each replica admitted some of the five; once its view of the usage is
	// a second old (the shortest trust, this close to the limit) it reads
	// the others' requests too.
	clock.Set(resets.Add(3 * time.Second))
	w := meterGet(e, id, plan, "/v1/things/x")
	if w.Code != http.StatusTooManyRequests || quotaOf(t, w).Meter != billing.MeterAPIRequests {
		t.Errorf("after 5 more in February: got %d %s, want 429 quota_exceeded", w.Code, w.Body)
	}
	if got := quotaOf(t, w).ResetsAt; !got.Equal(time.Date(2031, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("got resets_at %s, want 2031-03-01T00:00:00Z", got)
	}
}

// TestQuotaOrders refuses POST /v1/orders once orders_created is used up,
// while other routes go on; a soft limit never refuses.
func TestQuotaOrders(t *testing.T) {
	r := newMeterRig(t)
	hard := r.plan(t, 1000, 1000, map[string]testMeter{
		billing.MeterAPIRequests:   {included: 1000, hard: true},
		billing.MeterOrdersCreated: {included: 3, hard: true},
	})
	soft := r.plan(t, 1000, 1000, map[string]testMeter{
		billing.MeterAPIRequests:   {included: 2, hard: false},
		billing.MeterOrdersCreated: {included: 1, hard: false},
	})
	now := time.Now().UTC()
	limits := billing.NewLimits(r.rdb, r.app, r.log, billing.LimitOptions{FailOpen: true})
	e := meterEngine(middleware.RateLimit(rateLimiter{limits}), middleware.Quota(limits))

	t.Run("hard", func(t *testing.T) {
		id := testenv.NewTenant(t, testenv.WithPlan(hard)).ID
		// Two orders were counted from events already.
		insertCount(t, r.app, id, billing.MeterOrdersCreated, "", now.Truncate(time.Hour).Format(time.RFC3339), billing.PeriodOf(now), 2)
		if w := meterSend(e, http.MethodPost, id, hard, "/v1/orders"); w.Code != http.StatusCreated {
			t.Fatalf("third order: got %d %s, want 201", w.Code, w.Body)
		}
		w := meterSend(e, http.MethodPost, id, hard, "/v1/orders")
		if w.Code != http.StatusTooManyRequests {
			t.Fatalf("fourth order: got %d %s, want 429", w.Code, w.Body)
		}
		if b := quotaOf(t, w); b.Code != "quota_exceeded" || b.Meter != billing.MeterOrdersCreated || b.Limit != 3 || b.Used != 3 {
			t.Errorf("got %+v, want quota_exceeded of orders_created, limit 3, used 3", b)
		}
		if w := meterGet(e, id, hard, "/v1/things/x"); w.Code != http.StatusOK {
			t.Errorf("a GET with orders used up: got %d, want 200", w.Code)
		}
	})
	t.Run("soft", func(t *testing.T) {
		id := testenv.NewTenant(t, testenv.WithPlan(soft)).ID
		for i := range 5 {
			if w := meterSend(e, http.MethodPost, id, soft, "/v1/orders"); w.Code != http.StatusCreated {
				t.Fatalf("order %d over a soft limit: got %d %s, want 201", i+1, w.Code, w.Body)
			}
		}
	})
	t.Run("no principal", func(t *testing.T) {
		if w := meterGet(e, uuid.Nil, "", "/v1/things/x"); w.Code != http.StatusOK {
			t.Errorf("got %d, want 200", w.Code)
		}
	})
}
