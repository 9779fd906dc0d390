package events

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/testenv"
)

// freeStreams is the free plan's max_event_streams (migration 0017).
const freeStreams = 5

// fill takes n slots of the tenant, failing on a refusal.
func fill(t *testing.T, l *StreamLimit, tenant uuid.UUID, n int) []*streamSlot {
	t.Helper()
	var out []*streamSlot
	for i := range n {
		s, err := l.acquire(t.Context(), tenant, "free")
		if err != nil {
			t.Fatalf("slot %d of %d: %v", i+1, n, err)
		}
		out = append(out, s)
	}
	return out
}

// refused fails unless the next slot is refused with rate_limited.
func refused(t *testing.T, l *StreamLimit, tenant uuid.UUID, what string) {
	t.Helper()
	s, err := l.acquire(t.Context(), tenant, "free")
	if err == nil {
		s.release(t.Context())
		t.Fatalf("%s: a slot past the cap was granted", what)
	}
	if fault.CodeOf(err) != fault.RateLimited {
		t.Fatalf("%s: got %v, want rate_limited", what, err)
	}
}

// TestStreamLimitAcrossReplicas: two replicas share one count in Redis;
// released slots free at once; the leases of a replica that dies (neither
// released nor renewed) lapse after the lease time, while renewed ones
// hold.
func TestStreamLimitAcrossReplicas(t *testing.T) {
	env := testenv.Get(t)
	d, rdb := env.OpenDB(t, 4), env.RedisClient(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const lease = 1500 * time.Millisecond
	one := NewStreamLimit(d, rdb, log, StreamLimitOptions{Lease: lease})
	two := NewStreamLimit(d, rdb, log, StreamLimitOptions{Lease: lease})

	t.Run("one count for every replica", func(t *testing.T) {
		tenant := uuid.New()
		slots := append(fill(t, one, tenant, 3), fill(t, two, tenant, freeStreams-3)...)
		refused(t, one, tenant, "replica one")
		refused(t, two, tenant, "replica two")
		fill(t, two, uuid.New(), freeStreams) // another tenant
		slots[0].release(t.Context())
		slots = append(slots[1:], fill(t, two, tenant, 1)...)
		refused(t, one, tenant, "after one release and one acquire")
		for _, s := range slots {
			s.release(t.Context())
		}
		if n, err := rdb.Exists(t.Context(), streamsKey(tenant)).Result(); err != nil || n != 0 {
			t.Fatalf("after every release the tenant's key exists: %d, %v", n, err)
		}
	})

	t.Run("a dead replica's leases lapse, renewed ones hold", func(t *testing.T) {
		tenant := uuid.New()
		dead := NewStreamLimit(d, rdb, log, StreamLimitOptions{Lease: lease})
		deadAt := time.Now()
		fill(t, dead, tenant, 2) // never renewed nor released
		alive := fill(t, one, tenant, freeStreams-2)
		refused(t, two, tenant, "while the dead replica's leases last")
		// Renew the living slots as streams do.
		ctx, cancel := context.WithCancel(t.Context())
		var renewing sync.WaitGroup
		keepRenewing := func(slots []*streamSlot) {
			renewing.Go(func() {
				for ctx.Err() == nil {
					for _, s := range slots {
						s.renew(ctx)
					}
					time.Sleep(50 * time.Millisecond) // the point: renew as a live replica does
				}
			})
		}
		defer func() { cancel(); renewing.Wait() }()
		keepRenewing(alive)
		start := time.Now()
		var got []*streamSlot
		for len(got) < 2 {
			if s, err := two.acquire(t.Context(), tenant, "free"); err == nil {
				got = append(got, s)
				continue
			}
			if time.Since(start) > 3*lease {
				t.Fatalf("the dead replica's leases did not lapse within %v (got %d of 2 slots)", 3*lease, len(got))
			}
			time.Sleep(50 * time.Millisecond) // polled gently: each try takes slots
		}
		if took := time.Since(deadAt); took < lease-5*time.Millisecond {
			t.Fatalf("the dead replica's leases lapsed after %v, before the lease time %v", took, lease)
		}
		keepRenewing(got)
		time.Sleep(3 * lease) // the renewed leases outlive their first term
		refused(t, two, tenant, "with every slot held by renewed leases")
	})
}

// TestStreamLimitWithoutRedis: when Redis cannot answer, each replica
// counts its own streams against the cap.
func TestStreamLimitWithoutRedis(t *testing.T) {
	env := testenv.Get(t)
	d := env.OpenDB(t, 4)
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { down.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	one := NewStreamLimit(d, down, log, StreamLimitOptions{})
	two := NewStreamLimit(d, down, log, StreamLimitOptions{})

	tenant := uuid.New()
	slots := fill(t, one, tenant, freeStreams)
	refused(t, one, tenant, "replica one at the cap")
	fill(t, two, tenant, freeStreams) // replica two counts alone
	refused(t, two, tenant, "replica two at the cap")
	slots[0].release(t.Context())
	fill(t, one, tenant, 1)
	refused(t, one, tenant, "replica one at the cap again")
}
