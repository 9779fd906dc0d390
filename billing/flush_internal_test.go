package billing

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// flushRig is a Counter on the package's database, and a tenant.
type flushRig struct {
	app    *db.DB
	c      *Counter
	tenant uuid.UUID
}

func newFlushRig(t *testing.T) flushRig {
	t.Helper()
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	id := testenv.NewTenant(t).ID
	log := testenv.Logger()
	return flushRig{app: app, c: NewCounter(env.RedisClient(t), app, log, time.Now), tenant: id}
}

// requests returns the tenant's api_requests in usage_counters.
func (r flushRig) requests(t *testing.T) int64 {
	t.Helper()
	return testenv.Query[int64](t, r.app, r.tenant, "SELECT coalesce(sum(quantity), 0) FROM usage_counters WHERE meter = ?", MeterAPIRequests)
}

// seen returns what a quota on this replica sees of the tenant's
// api_requests: usage_counters plus what the Counter has not flushed.
func (r flushRig) seen(t *testing.T) int64 {
	t.Helper()
	l := NewLimits(nil, r.app, nil, LimitOptions{Counter: r.c})
	pl := &planLimits{name: "free", meters: map[string]meterLimit{MeterAPIRequests: {included: 1 << 40, hard: true}}}
	used, err := l.readUsage(t.Context(), r.tenant, pl, PeriodOf(time.Now()))
	if err != nil {
		t.Fatalf("read usage: %v", err)
	}
	return used[MeterAPIRequests]
}

// TestFlushRetriedAfterLostReply commits a flush and then loses the reply
// (a hook fails after COMMIT, as a connection that broke before the answer
// came back): the Counter keeps the flush and writes it again, and the
// retry finds its number applied and adds nothing. Meanwhile a quota on the
// same replica sees the counts once, not from both the table and memory.
func TestFlushRetriedAfterLostReply(t *testing.T) {
	r := newFlushRig(t)
	ctx := t.Context()
	lost := errors.New("connection reset before the COMMIT reply")
	var calls []uint64
	r.c.hooks.afterFlush = func(seq uint64) error {
		calls = append(calls, seq)
		if len(calls) == 1 {
			return lost
		}
		return nil
	}

	r.c.Count(ctx, r.tenant, MeterAPIRequests, "", 7)
	if err := r.c.flushOnce(ctx); !errors.Is(err, lost) {
		t.Fatalf("first flush: got %v, want the lost reply", err)
	}
	if got := r.requests(t); got != 7 {
		t.Fatalf("after the unanswered commit: got api_requests %d in PostgreSQL, want 7 (it committed)", got)
	}
	if got := Pending(r.c); got != 1 {
		t.Fatalf("got %d pending flushes, want the unanswered one kept", got)
	}
	if got := r.seen(t); got != 7 {
		t.Errorf("quota view with the applied flush still in memory: got %d, want 7 (not 14)", got)
	}
	if got := r.c.unflushed(r.tenant, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), 0); got[MeterKey{Meter: MeterAPIRequests}] != 7 {
		t.Fatalf("got %v held in memory, want the pending 7 (else the check above proves nothing)", got)
	}

	r.c.Count(ctx, r.tenant, MeterAPIRequests, "", 5)
	if got := r.seen(t); got != 12 {
		t.Errorf("quota view with 5 more in memory: got %d, want 12", got)
	}
	if err := r.c.flushOnce(ctx); err != nil {
		t.Fatalf("second flush: %v", err)
	}
	if got := r.requests(t); got != 12 {
		t.Errorf("after the retry and the next flush: got api_requests %d, want 7 + 5 = 12", got)
	}
	if len(calls) != 3 || calls[0] != calls[1] || calls[2] != calls[1]+1 {
		t.Errorf("got flushes %v, want the first written twice under one number, then the next", calls)
	}
	if got := r.c.duplicates.Load(); got != 1 {
		t.Errorf("got %d retries found applied, want 1", got)
	}
	if got := Pending(r.c); got != 0 {
		t.Errorf("got %d pending flushes, want none", got)
	}
	if got := r.seen(t); got != 12 {
		t.Errorf("quota view after the flushes: got %d, want 12", got)
	}
}

// TestFlushRetriedAfterFailure writes a flush whose transaction never
// commits (its context ends first): the counts stay pending and the next
// flush applies them once.
func TestFlushRetriedAfterFailure(t *testing.T) {
	r := newFlushRig(t)
	r.c.Count(t.Context(), r.tenant, MeterAPIRequests, "", 3)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.c.flushOnce(canceled); err == nil {
		t.Fatal("got no error from a flush with a canceled context")
	}
	if got := r.requests(t); got != 0 {
		t.Fatalf("got api_requests %d after the failed flush, want 0", got)
	}
	if got := r.seen(t); got != 3 {
		t.Errorf("quota view with the failed flush pending: got %d, want 3", got)
	}
	r.c.Count(t.Context(), r.tenant, MeterAPIRequests, "", 4)
	if err := r.c.flushOnce(t.Context()); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if got := r.requests(t); got != 7 {
		t.Errorf("got api_requests %d, want 3 + 4 = 7", got)
	}
	if got := r.c.duplicates.Load(); got != 0 {
		t.Errorf("got %d retries found applied, want 0: the first attempt never committed", got)
	}
}

// TestFlushOrderAndChunks flushes more tenants than one transaction takes:
// every tenant's counts arrive, in flushes numbered in order.
func TestFlushOrderAndChunks(t *testing.T) {
	r := newFlushRig(t)
	ctx := t.Context()
	const extra = maxFlushTenants + 10 // tenants that do not exist: skipped
	for range extra {
		r.c.Count(ctx, uuid.New(), MeterAPIRequests, "", 1)
	}
	r.c.Count(ctx, r.tenant, MeterAPIRequests, "", 2)
	var seqs []uint64
	r.c.hooks.afterFlush = func(seq uint64) error { seqs = append(seqs, seq); return nil }
	if err := r.c.flushOnce(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if len(seqs) != 2 || seqs[1] != seqs[0]+1 {
		t.Errorf("got flushes %v, want two in order", seqs)
	}
	if got := r.requests(t); got != 2 {
		t.Errorf("got api_requests %d, want 2", got)
	}
	var applied uint64
	if err := r.app.WithTenant(ctx, r.tenant, func(tx *gorm.DB) error {
		var err error
		applied, err = r.c.appliedSeq(ctx, tx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) > 0 && applied != seqs[len(seqs)-1] {
		t.Errorf("got applied_seq %d, want %d", applied, seqs[len(seqs)-1])
	}
}
