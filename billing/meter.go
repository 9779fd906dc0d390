package billing

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/db"
)

// The meters, as plan_meters and usage_counters name them.
const (
	// MeterAPIRequests counts authenticated /v1 requests (CountRequest).
	MeterAPIRequests = "api_requests"
	// MeterOrdersCreated counts order.placed events.
	MeterOrdersCreated = "orders_created"
	// MeterPaymentVolume sums captured amounts (minor units) per currency.
	MeterPaymentVolume = "payment_volume"
	// MeterActiveProducts is a gauge: a tenant's number of products.
	MeterActiveProducts = "active_products"
)

// Meters lists every meter.
var Meters = []string{MeterAPIRequests, MeterOrdersCreated, MeterPaymentVolume, MeterActiveProducts}

// IsGauge reports whether meter is a level (usage in a period is its
// highest hourly value) rather than a count (usage is the sum).
func IsGauge(meter string) bool { return meter == MeterActiveProducts }

// MeterKey names one meter's usage; Currency is "" for meters not counted
// in a currency.
type MeterKey struct {
	Meter    string
	Currency string
}

// Timing of a Counter's background work.
const (
	flushEvery   = time.Second      // memory → usage_counters
	sampleEvery  = time.Minute      // active_products
	pruneEvery   = time.Hour        // old usage_flushes rows
	legacyEvery  = 10 * time.Minute // usage an earlier release left in Redis
	finalTimeout = 15 * time.Second // the flush when Run ends
)

// maxFlushTenants caps the tenants one flush transaction writes, so that
// it holds its row locks (which other replicas' flushes of the same
// tenants wait for) for milliseconds; more tenants make more flushes.
const maxFlushTenants = 200

// shardCount spreads the accumulator over this many locks.
const shardCount = 64

// countKey is one accumulated count: tenant, meter, currency and UTC hour
// (Unix seconds / 3600).
type countKey struct {
	tenant   uuid.UUID
	meter    string
	currency string
	hour     int64
}

// shard is one part of the accumulator, by tenant.
type shard struct {
	mu     sync.Mutex
	counts map[countKey]int64
	_      [40]byte // keep shards on separate cache lines
}

// batch is one tenant's counts in a flush.
type batch struct {
	tenant uuid.UUID
	counts []count
}

// flush is counts taken from the accumulator together, under one sequence
// number of this replica: the unit written to usage_counters in one
// transaction, and retried as a whole under the same number until it is
// known to be there.
type flush struct {
	seq     uint64
	batches []batch // by tenant id
}

// Counter counts request meters: in process, then into usage_counters in
// PostgreSQL about once a second (see the package doc). It is safe for
// concurrent use; Run does its background work.
type Counter struct {
	rdb     *redis.Client // only to drain usage an earlier release left in Redis
	d       *db.DB
	log     *slog.Logger
	now     func() time.Time
	replica string // names this process's row in usage_flushes

	shards [shardCount]shard

	flushMu sync.Mutex // one flush at a time, so flushes apply in order

	// mu guards seq, pending and sampled; when both are needed it is
	// taken before a shard's lock.
	mu      sync.Mutex
	seq     uint64   // the sequence number of the last flush taken
	pending []*flush // taken, not known to be in usage_counters; by seq
	sampled map[uuid.UUID]gaugeSample

	failures   int          // flushes failed in a row; guarded by flushMu
	duplicates atomic.Int64 // retried flushes found applied already
	hooks      flushHooks
}

// NewCounter returns a Counter writing to PostgreSQL (d); rdb is read only
// to drain usage that an earlier release kept in Redis. now is the clock
// that decides a count's hour (time.Now in production).
func NewCounter(rdb *redis.Client, d *db.DB, log *slog.Logger, now func() time.Time) *Counter {
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	return &Counter{
		rdb: rdb, d: d, log: log.With("component", "billing"), now: now,
		replica: uuid.NewString(), sampled: map[uuid.UUID]gaugeSample{},
	}
}

// Count adds n (> 0) to an additive meter of tenantID for the current hour;
// currency is "" for meters without one. It only touches memory: Run moves
// the count on.
func (c *Counter) Count(_ context.Context, tenantID uuid.UUID, meter, currency string, n int64) {
	if n <= 0 || tenantID == uuid.Nil || meter == "" {
		return
	}
	k := countKey{tenant: tenantID, meter: meter, currency: currency, hour: c.now().Unix() / 3600}
	s := &c.shards[shardOf(tenantID)]
	s.mu.Lock()
	if s.counts == nil {
		s.counts = make(map[countKey]int64)
	}
	s.counts[k] += n
	s.mu.Unlock()
}

func shardOf(tenantID uuid.UUID) int {
	return int(binary.LittleEndian.Uint64(tenantID[8:]) % shardCount)
}

// unflushed returns what this replica holds of tenantID's usage in hours
// [from, to) that usage_counters did not have when it said that this
// replica's flushes up to applied were there (appliedSeq): the accumulator
// and the pending flushes numbered above applied. Read usage_counters
// first and applied after it: a flush that commits in between is then
// left out (counted a moment later), never counted twice.
func (c *Counter) unflushed(tenantID uuid.UUID, from, to time.Time, applied uint64) map[MeterKey]int64 {
	lo, hi := from.Unix()/3600, to.Unix()/3600
	out := map[MeterKey]int64{}
	// c.mu, held across both, keeps a take (which moves counts from the
	// shards into pending under c.mu) from showing them twice or not at all.
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.shards[shardOf(tenantID)]
	s.mu.Lock()
	for k, n := range s.counts {
		if k.tenant == tenantID && k.hour >= lo && k.hour < hi {
			out[MeterKey{k.meter, k.currency}] += n
		}
	}
	s.mu.Unlock()
	for _, f := range c.pending {
		if f.seq <= applied {
			continue
		}
		i, found := slices.BinarySearchFunc(f.batches, tenantID, func(b batch, id uuid.UUID) int {
			return bytes.Compare(b.tenant[:], id[:])
		})
		if !found {
			continue
		}
		for _, n := range f.batches[i].counts {
			if h := n.hour.Unix() / 3600; h >= lo && h < hi {
				out[MeterKey{n.meter, n.currency}] += n.n
			}
		}
	}
	return out
}

// CountRequest counts one authenticated request of tenantID (the
// api_requests meter); it never waits.
func (c *Counter) CountRequest(ctx context.Context, tenantID uuid.UUID) {
	c.Count(ctx, tenantID, MeterAPIRequests, "", 1)
}
