package billing

import (
	"context"
	"encoding/binary"
	"log/slog"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/identity"
)

// The meters, as plan_meters and usage_counters name them.
const (
	// MeterAPIRequests counts authenticated /v1 requests (Metering).
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
	pushEvery     = 100 * time.Millisecond // accumulator → Redis
	directEvery   = time.Second            // accumulator → PostgreSQL while Redis is down
	flushEvery    = 30 * time.Second       // Redis → PostgreSQL, past hours
	sampleEvery   = time.Minute            // active_products
	pruneEvery    = time.Hour              // old usage_flushes rows
	probeEvery    = time.Second            // how often a down Redis is tried again
	leftoverAfter = time.Minute            // a flushing key this old was left by a dead flusher
	finalTimeout  = 15 * time.Second       // the flush when Run ends
)

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

// batch is one tenant's counts taken from the accumulator together, under
// one sequence number: the unit that is pushed to Redis or written to
// PostgreSQL, and retried as a whole.
type batch struct {
	seq    uint64
	tenant uuid.UUID
	counts map[countKey]int64
}

// Counter counts request meters: in process first, then in Redis, then in
// usage_counters. It is safe for concurrent use; Run does its background
// work.
type Counter struct {
	rdb     *redis.Client
	d       *db.DB
	log     *slog.Logger
	now     func() time.Time
	replica string // names this process's sequence keys in Redis

	shards [shardCount]shard

	pushMu   sync.Mutex // one push to Redis at a time
	directMu sync.Mutex // one writer to PostgreSQL at a time

	mu       sync.Mutex // guards the fields below
	seq      uint64
	inflight []*batch // being pushed to Redis now
	unknown  []*batch // pushed, but whether Redis applied them is not known
	direct   []*batch // to be written to PostgreSQL
	down     bool     // Redis failed; counts go to PostgreSQL
	probeAt  time.Time
	sampled  map[uuid.UUID]gaugeSample

	hooks flushHooks
}

// NewCounter returns a Counter over Redis and PostgreSQL; now is the clock
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
// [from, to) that neither Redis nor PostgreSQL has yet.
func (c *Counter) unflushed(tenantID uuid.UUID, from, to time.Time) map[MeterKey]int64 {
	lo, hi := from.Unix()/3600, to.Unix()/3600
	out := map[MeterKey]int64{}
	add := func(k countKey, n int64) {
		if k.tenant == tenantID && k.hour >= lo && k.hour < hi {
			out[MeterKey{k.meter, k.currency}] += n
		}
	}
	s := &c.shards[shardOf(tenantID)]
	s.mu.Lock()
	for k, n := range s.counts {
		add(k, n)
	}
	s.mu.Unlock()
	c.mu.Lock()
	for _, list := range [][]*batch{c.inflight, c.unknown, c.direct} {
		for _, b := range list {
			if b.tenant != tenantID {
				continue
			}
			for k, n := range b.counts {
				add(k, n)
			}
		}
	}
	c.mu.Unlock()
	return out
}

// rejectedKey marks, in the gin context, a response this package refused
// (rate limited, quota exceeded, rate limiting unavailable): Metering does
// not count it.
const rejectedKey = "billing.rejected"

func markRejected(c *gin.Context) { c.Set(rejectedKey, true) }

// Metering counts api_requests for the tenant of every request that passes
// through it, whatever its status (a panic included), except the requests
// that RateLimit or Quota refused. Put it after authentication and before
// RateLimit and Quota.
func Metering(counter *Counter) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if c.GetBool(rejectedKey) {
				return
			}
			if p, ok := identity.FromContext(c.Request.Context()); ok && p.TenantID != uuid.Nil {
				counter.Count(c.Request.Context(), p.TenantID, MeterAPIRequests, "", 1)
			}
		}()
		c.Next()
	}
}
