package idempotency_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/idempotency"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestSweep proves Sweep, run as the runtime role, deletes the expired keys
// of every tenant and keeps every key that has not expired. The sweep tests
// do not run in parallel: a sweep deletes every tenant's expired keys.
func TestSweep(t *testing.T) {
	h := newHarness(t)
	a, b := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	// Keys stored 25 hours ago expired an hour ago.
	past := idempotency.NewStore(h.app, func() time.Time { return time.Now().Add(-idempotency.Retention - time.Hour) })
	old := h.engine(past)
	for _, tenant := range []uuid.UUID{a, a, b} {
		w := serve(t, old, request{tenant: tenant, keys: key(newKey(t)), body: `{"sku":"old"}`})
		if w.Code != http.StatusCreated {
			t.Fatalf("old key: got status %d (%s), want 201", w.Code, w.Body)
		}
	}
	fresh := request{tenant: a, keys: key(newKey(t)), body: `{"sku":"fresh"}`}
	first := h.do(t, fresh)
	if first.Code != http.StatusCreated {
		t.Fatalf("fresh key: got status %d (%s), want 201", first.Code, first.Body)
	}

	n, err := h.store.Sweep(t.Context())
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if n < 3 {
		t.Errorf("got %d keys swept, want at least 3", n)
	}
	tests := []struct {
		name   string
		tenant uuid.UUID
		want   int64
	}{
		{"tenant A keeps its fresh key", a, 1},
		{"tenant B", b, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyCount(t, h.app, tt.tenant); got != tt.want {
				t.Errorf("got %d keys, want %d", got, tt.want)
			}
		})
	}
	if again := h.do(t, fresh); !replayed(again) {
		t.Errorf("fresh key after the sweep: got replayed false, want true")
	}
}

// TestRunSweeper proves the sweeper deletes expired keys while it runs and
// returns when its context ends.
func TestRunSweeper(t *testing.T) {
	h := newHarness(t)
	tenant := testenv.NewTenant(t).ID
	past := idempotency.NewStore(h.app, func() time.Time { return time.Now().Add(-idempotency.Retention - time.Hour) })
	if w := serve(t, h.engine(past), request{tenant: tenant, keys: key(newKey(t)), body: `{"sku":"old"}`}); w.Code != http.StatusCreated {
		t.Fatalf("got status %d (%s), want 201", w.Code, w.Body)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		h.store.RunSweeper(ctx, 20*time.Millisecond, testenv.Logger())
		close(done)
	}()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return keyCount(t, h.app, tenant) == 0, "got the expired key still stored, want it swept"
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("got RunSweeper still running 5s after its context ended, want it returned")
	}
}

// TestRuntimeRoleCannotSweepUnexpired proves the runtime role reaches other
// tenants' keys only through idempotency_sweep, and only expired ones: with
// no tenant set it sees and deletes nothing.
func TestRuntimeRoleCannotSweepUnexpired(t *testing.T) {
	h := newHarness(t)
	tenant := testenv.NewTenant(t).ID
	if w := h.do(t, request{tenant: tenant, keys: key(newKey(t)), body: `{"sku":"kept"}`}); w.Code != http.StatusCreated {
		t.Fatalf("got status %d (%s), want 201", w.Code, w.Body)
	}
	res := h.app.Unscoped(t.Context()).Exec("DELETE FROM idempotency_keys")
	if res.Error != nil {
		t.Fatalf("delete without tenant: %v", res.Error)
	}
	if res.RowsAffected != 0 {
		t.Errorf("got %d rows deleted without a tenant, want 0", res.RowsAffected)
	}
	if _, err := h.store.Sweep(t.Context()); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if got := keyCount(t, h.app, tenant); got != 1 {
		t.Errorf("got %d keys after the sweep, want the unexpired 1", got)
	}
}
