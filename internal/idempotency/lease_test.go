package idempotency_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/idempotency"
)

// TestLeaseTakeover proves a key whose holder stopped renewing (its process
// stalled or died) answers 409 while the lease is valid and is taken over
// once it has lapsed; the stale holder, should it finish after all, can
// neither store its response nor release the taker's claim.
func TestLeaseTakeover(t *testing.T) {
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
			// Stop renewing, as a stalled process would.
			idempotency.SetLease(h.store, idempotency.Lease, time.Hour)
			r := request{path: "/v1/blocks", tenant: h.tenant(t), keys: key(newKey(t)), body: `{"sku":"lease"}`}

			stale := make(chan *httptest.ResponseRecorder)
			go func() { stale <- h.do(t, r) }()
			<-h.entered[0]

			busy := h.do(t, r)
			if busy.Code != http.StatusConflict || codeOf(busy) != "conflict" {
				t.Fatalf("while the lease is valid: got status %d (%s), want 409 conflict", busy.Code, busy.Body)
			}
			if got := busy.Header().Get("Retry-After"); got != "1" {
				t.Errorf("got Retry-After %q, want \"1\"", got)
			}

			h.clock.Advance(idempotency.Lease + time.Second)
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
			replay := h.do(t, r)
			if !replayed(replay) {
				t.Errorf("after both finished: got replayed false, want true")
			}
			wantSame(t, replay, took)
			if got := h.runs.Load(); got != 2 {
				t.Errorf("got %d handler runs, want 2", got)
			}
		})
	}
}

// TestLeaseRenewal proves a handler slower than the lease keeps its key: the
// running request renews the lease, so a retry after the original lease
// would have lapsed still gets 409 and the handler runs once.
func TestLeaseRenewal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	idempotency.SetLease(h.store, idempotency.Lease, 20*time.Millisecond)
	tenant := h.tenant(t)
	k := newKey(t)
	r := request{path: "/v1/blocks", tenant: tenant, keys: key(k), body: `{"sku":"renew"}`}

	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- h.do(t, r) }()
	<-h.entered[0]
	h.clock.Advance(idempotency.Lease + time.Second)

	// Wait for a renewal against the advanced clock.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var lockedUntil time.Time
		err := h.app.WithTenant(context.Background(), tenant, func(tx *gorm.DB) error {
			return tx.Raw("SELECT locked_until FROM idempotency_keys WHERE key = ?", k).Scan(&lockedUntil).Error
		})
		if err != nil {
			t.Fatalf("read lease: %v", err)
		}
		if lockedUntil.After(h.clock.Now()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got locked_until %v, want it renewed past %v within 10s", lockedUntil, h.clock.Now())
		}
		time.Sleep(10 * time.Millisecond)
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
	if got := h.runs.Load(); got != 1 {
		t.Errorf("got %d handler runs, want 1", got)
	}
}
