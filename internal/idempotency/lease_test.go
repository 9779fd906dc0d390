package idempotency_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/idempotency"
	"github.com/tenantd/tenantd/internal/testenv"
)

// freeWithin is how soon after its holder died, or answered 5xx, a key must
// be free for a retry.
const freeWithin = 5 * time.Second

// replica is a second tenantd process as far as idempotency keys go: its
// own store on its own pool, which reaches PostgreSQL through a proxy the
// test can cut.
type replica struct {
	proxy *pgProxy
	store *idempotency.Store
	eng   *gin.Engine
}

func (h *harness) replica(t *testing.T) *replica {
	t.Helper()
	env := testenv.Get(t)
	p := newPGProxy(t, env.AppURL)
	d, err := db.Open(context.Background(), p.URL(t, env.AppURL), db.Options{MaxConns: 4})
	if err != nil {
		t.Fatalf("open database through the proxy: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	s := idempotency.NewStore(d, h.clock.Now)
	return &replica{proxy: p, store: s, eng: h.engine(s)}
}

// leaseLapsed reports whether the tenant's key k is held by no valid lease,
// by the database's clock.
func (h *harness) leaseLapsed(t *testing.T, tenant uuid.UUID, k string) bool {
	t.Helper()
	lapsed := testenv.Query[bool](t, h.app, tenant, "SELECT locked_until <= now() FROM idempotency_keys WHERE key = ?", k)
	return lapsed
}

// retryUntilFresh sends r every 50ms while it is answered 409 (in
// progress), and returns the first other answer and when it came.
func (h *harness) retryUntilFresh(t *testing.T, r request, within time.Duration) (*httptest.ResponseRecorder, time.Time) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		w := h.do(t, r)
		if w.Code != http.StatusConflict {
			return w, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("still 409 after %v: %s", within, w.Body)
		}
		time.Sleep(50 * time.Millisecond) // polled gently: each try is a request
	}
}

// TestDeadHolderFreesKey proves the key of a request whose replica died
// (here: lost PostgreSQL, so it can neither renew its lease nor release
// the key) answers 409 at first and is free for a retry within 5s; the
// dead holder, should it come back, can neither store its response over
// the retry's nor release the retry's claim.
func TestDeadHolderFreesKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dead := h.replica(t)
	tenant := testenv.NewTenant(t).ID
	k := newKey(t)
	r := request{path: "/v1/blocks", tenant: tenant, keys: key(k), body: `{"sku":"dead"}`}
	close(h.gate[1]) // the retry's handler does not block

	holder := make(chan *httptest.ResponseRecorder)
	go func() { holder <- serve(t, dead.eng, r) }()
	<-h.entered[0]
	died := time.Now()
	dead.proxy.Cut()

	if w := h.do(t, r); w.Code != http.StatusConflict {
		t.Fatalf("right after the holder died: got status %d (%s), want 409 while its lease runs", w.Code, w.Body)
	}
	fresh, at := h.retryUntilFresh(t, r, 3*idempotency.Lease)
	if fresh.Code != http.StatusCreated || replayed(fresh) {
		t.Fatalf("retry: got status %d replayed=%v (%s), want a fresh 201", fresh.Code, replayed(fresh), fresh.Body)
	}
	if waited := at.Sub(died); waited > freeWithin {
		t.Errorf("got the key free %v after its holder died, want within %v", waited, freeWithin)
	}
	t.Logf("key free %v after its holder died", at.Sub(died))

	close(h.gate[0])
	if w := <-holder; w.Code != http.StatusCreated {
		t.Errorf("dead holder: got status %d (%s), want its own 201", w.Code, w.Body)
	}
	h.wantReplay(t, "after both finished", r, fresh)
	h.wantRuns(t, 2)
	h.waitLog(t, "renewing lease failed")
}

// TestStalledHolderIsTakenOver proves a holder that stopped renewing while
// it still runs (a stalled process) keeps its key for its lease, loses it
// afterwards, and then can neither store its response nor release the
// taker's claim.
func TestStalledHolderIsTakenOver(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		firstFails bool
		wantStale  int
	}{
		{"stale holder answers 201", false, http.StatusCreated},
		{"stale holder answers 503", true, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.firstFails = tt.firstFails
			stalled := idempotency.NewStore(h.app, h.clock.Now)
			idempotency.SetLease(stalled, time.Second, time.Hour) // never renews
			tenant := testenv.NewTenant(t).ID
			k := newKey(t)
			r := request{path: "/v1/blocks", tenant: tenant, keys: key(k), body: `{"sku":"lease"}`}

			stale := make(chan *httptest.ResponseRecorder)
			go func() { stale <- serve(t, h.engine(stalled), r) }()
			<-h.entered[0]

			busy := h.do(t, r)
			if busy.Code != http.StatusConflict || codeOf(busy) != "conflict" {
				t.Fatalf("while the lease is valid: got status %d (%s), want 409 conflict", busy.Code, busy.Body)
			}
			if got := busy.Header().Get("Retry-After"); got != "1" {
				t.Errorf("got Retry-After %q, want \"1\"", got)
			}

			testenv.Eventually(t, 10*time.Second, func() (bool, string) {
				return h.leaseLapsed(t, tenant, k), "got the stalled lease still valid, want it lapsed after 1s"
			})
			taker := make(chan *httptest.ResponseRecorder)
			go func() { taker <- h.do(t, r) }()
			<-h.entered[1]

			close(h.gate[0])
			if w := <-stale; w.Code != tt.wantStale {
				t.Errorf("stale holder: got status %d (%s), want its own %d", w.Code, w.Body, tt.wantStale)
			}
			if w := h.do(t, r); w.Code != http.StatusConflict {
				t.Errorf("after the stale holder ended, while the taker runs: got status %d replayed=%v (%s), want 409",
					w.Code, replayed(w), w.Body)
			}

			close(h.gate[1])
			took := <-taker
			if took.Code != http.StatusCreated || replayed(took) {
				t.Fatalf("taker: got status %d replayed=%v (%s), want a fresh 201", took.Code, replayed(took), took.Body)
			}
			h.wantReplay(t, "after both finished", r, took)
			h.wantRuns(t, 2)
		})
	}
}

// TestLeaseRenewal proves a handler slower than the lease keeps its key: the
// running request renews the lease, so a retry after the first lease would
// have lapsed still gets 409, and the handler runs once.
func TestLeaseRenewal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tenant := testenv.NewTenant(t).ID
	k := newKey(t)
	r := request{path: "/v1/blocks", tenant: tenant, keys: key(k), body: `{"sku":"renew"}`}

	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- h.do(t, r) }()
	<-h.entered[0]
	time.Sleep(idempotency.Lease + idempotency.RenewEvery) // the point: outlive a lease term while the holder renews

	if h.leaseLapsed(t, tenant, k) {
		t.Fatalf("got the lease lapsed %v into the handler, want it renewed", idempotency.Lease+idempotency.RenewEvery)
	}
	busy := h.do(t, r)
	if busy.Code != http.StatusConflict {
		t.Fatalf("while the renewed lease is valid: got status %d (%s), want 409", busy.Code, busy.Body)
	}
	close(h.gate[0])
	first := <-done
	if first.Code != http.StatusCreated {
		t.Fatalf("slow request: got status %d (%s), want 201", first.Code, first.Body)
	}
	wantSame(t, h.do(t, r), first)
	h.wantRuns(t, 1)
}

// TestReleaseAfterServerError proves a retry after a 5xx gets a fresh
// attempt: at once when releasing the key works, also when its first tries
// fail (PostgreSQL briefly unreachable from the holder: the release is
// tried again), and within 5s when every try fails.
func TestReleaseAfterServerError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cut     bool          // the holder loses PostgreSQL before it answers
		restore bool          // and gets it back after a failed release
		lease   time.Duration // the holder's lease
		within  time.Duration // the retry must get a fresh attempt this soon after the 5xx
	}{
		// A lease of a minute: only the release can free the key in time.
		{name: "release works", lease: time.Minute, within: time.Second},
		{name: "release fails, then works", cut: true, restore: true, lease: time.Minute, within: time.Second},
		{name: "release keeps failing", cut: true, lease: idempotency.Lease, within: freeWithin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.firstFails = true
			holder := h.replica(t)
			idempotency.SetLease(holder.store, tt.lease, idempotency.RenewEvery)
			r := request{path: "/v1/blocks", tenant: testenv.NewTenant(t).ID, keys: key(newKey(t)), body: `{"sku":"release"}`}
			close(h.gate[1])

			first := make(chan *httptest.ResponseRecorder)
			go func() { first <- serve(t, holder.eng, r) }()
			<-h.entered[0]
			if tt.cut {
				holder.proxy.Cut()
			}
			close(h.gate[0])
			if tt.restore {
				h.waitLog(t, "release key failed; retrying")
				holder.proxy.Restore()
			}
			failed := <-first
			answered := time.Now()
			if failed.Code != http.StatusServiceUnavailable {
				t.Fatalf("first: got status %d (%s), want 503", failed.Code, failed.Body)
			}

			fresh, at := h.retryUntilFresh(t, r, 3*idempotency.Lease)
			if fresh.Code != http.StatusCreated || replayed(fresh) {
				t.Fatalf("retry: got status %d replayed=%v (%s), want a fresh 201", fresh.Code, replayed(fresh), fresh.Body)
			}
			if waited := at.Sub(answered); waited > tt.within {
				t.Errorf("got a fresh attempt %v after the 5xx, want within %v", waited, tt.within)
			}
			if tt.restore {
				h.waitLog(t, "release key succeeded after retrying")
			}
			h.wantRuns(t, 2)
		})
	}
}
