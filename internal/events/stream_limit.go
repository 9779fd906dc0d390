package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
)

// StreamLimit caps how many event streams a tenant holds open at once, at
// its plan's max_event_streams (table plans), counted across replicas.
//
// Each open stream holds a lease in Redis: a member of the tenant's sorted
// set tenantd:event_streams:{<tenant id>} (hash-tagged, so one Redis
// Cluster slot), scored by the time it expires. A stream renews its lease
// every third of Options.Lease and removes it when it ends; a replica that
// dies leaves leases that lapse within Options.Lease. Opening a stream
// drops lapsed leases and counts the rest, in one script, by Redis's clock.
//
// When Redis cannot answer, each replica counts its own streams of the
// tenant against the same cap: a tenant may then hold up to cap streams
// per replica. Streams opened meanwhile enter Redis with their next renewal.
type StreamLimit struct {
	rdb   *redis.Client // nil: every replica counts alone
	caps  *streamCaps
	log   *slog.Logger
	lease time.Duration

	mu    sync.Mutex
	local map[uuid.UUID]int // this replica's open streams per tenant
}

// StreamLimitOptions tune a StreamLimit.
type StreamLimitOptions struct {
	// Lease is how long a stream's lease lasts unless renewed; default 15 s.
	Lease time.Duration
}

// DefaultStreamLease is how long a stream's lease lasts unless renewed.
const DefaultStreamLease = 15 * time.Second

// streamRetryAfter is the Retry-After of a refused stream: about when a
// lease left by a dead replica would have lapsed, and no busier than that.
const streamRetryAfter = 5 * time.Second

// NewStreamLimit returns a limit that reads plans from d and counts leases
// in rdb (nil: per replica only).
func NewStreamLimit(d *db.DB, rdb *redis.Client, log *slog.Logger, opts StreamLimitOptions) *StreamLimit {
	if opts.Lease <= 0 {
		opts.Lease = DefaultStreamLease
	}
	return &StreamLimit{rdb: rdb, caps: &streamCaps{db: d}, log: log, lease: opts.Lease, local: map[uuid.UUID]int{}}
}

// acquireScript drops a tenant's lapsed leases and adds one for ARGV[1]
// (lasting ARGV[3] ms) unless ARGV[2] leases are held: 1 when added, 0 when
// full.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
`)

// renewScript extends (or, after Redis lost it, restores) the lease of
// ARGV[1] by ARGV[2] ms.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
`)

// streamsKey is the tenant's sorted set of stream leases.
func streamsKey(tenantID uuid.UUID) string {
	return "tenantd:event_streams:{" + tenantID.String() + "}"
}

// redisTimeout bounds each lease call, so that a hanging Redis delays a
// stream by at most this much before the per-replica count decides.
const redisTimeout = time.Second

// streamSlot is an open stream's place under its tenant's cap.
type streamSlot struct {
	l       *StreamLimit
	tenant  uuid.UUID
	id      string
	renewAt time.Time
}

// acquire takes a slot for a new stream of the tenant, or refuses with 429
// rate_limited once the plan's cap is reached.
func (l *StreamLimit) acquire(ctx context.Context, tenantID uuid.UUID, plan string) (*streamSlot, error) {
	limit, err := l.caps.of(ctx, plan)
	if err != nil {
		return nil, err
	}
	s := &streamSlot{l: l, tenant: tenantID, id: uuid.NewString(), renewAt: time.Now().Add(l.lease / 3)}
	counted := false
	if l.rdb != nil {
		rctx, cancel := context.WithTimeout(ctx, redisTimeout)
		n, err := acquireScript.Run(rctx, l.rdb, []string{streamsKey(tenantID)}, s.id, limit, l.lease.Milliseconds()).Int()
		cancel()
		switch {
		case err == nil && n == 0:
			return nil, tooManyStreams(limit)
		case err == nil:
			counted = true
		case ctx.Err() != nil:
			return nil, ctx.Err()
		default:
			l.log.WarnContext(ctx, "events: Redis could not count open event streams; counting this replica's only", "err", err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !counted && l.local[tenantID] >= limit {
		return nil, tooManyStreams(limit)
	}
	l.local[tenantID]++
	return s, nil
}

func tooManyStreams(limit int) error {
	return fault.New(fault.RateLimited, fmt.Sprintf(
		"the tenant has %d event streams open, the most its plan allows: close one, or retry later", limit))
}

// renew extends the slot's lease when a third of it has passed. A failure
// is logged: the lease lapses, and the stream goes on uncounted.
func (s *streamSlot) renew(ctx context.Context) {
	if s.l.rdb == nil || time.Now().Before(s.renewAt) {
		return
	}
	s.renewAt = time.Now().Add(s.l.lease / 3)
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	if err := renewScript.Run(rctx, s.l.rdb, []string{streamsKey(s.tenant)}, s.id, s.l.lease.Milliseconds()).Err(); err != nil && ctx.Err() == nil {
		s.l.log.WarnContext(ctx, "events: could not renew an event stream's lease", "err", err)
	}
}

// release gives the slot back; ctx may have ended (the client left).
func (s *streamSlot) release(ctx context.Context) {
	s.l.mu.Lock()
	if s.l.local[s.tenant]--; s.l.local[s.tenant] <= 0 {
		delete(s.l.local, s.tenant)
	}
	s.l.mu.Unlock()
	if s.l.rdb == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
	defer cancel()
	if err := s.l.rdb.ZRem(rctx, streamsKey(s.tenant), s.id).Err(); err != nil {
		s.l.log.WarnContext(ctx, "events: could not release an event stream's lease; it lapses by itself", "err", err)
	}
}

// streamCaps caches each plan's max_event_streams.
type streamCaps struct {
	db *db.DB

	mu       sync.Mutex
	caps     map[string]int
	loadedAt time.Time
}

// capsTTL is how long plans are cached: a changed cap applies to streams
// opened after it.
const capsTTL = time.Minute

// of returns the plan's cap, reading plans again when the cache is older
// than capsTTL (and keeping the old answer if that fails).
func (c *streamCaps) of(ctx context.Context, plan string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n, ok := c.caps[plan]; ok && time.Since(c.loadedAt) < capsTTL {
		return n, nil
	}
	var rows []struct {
		Name            string
		MaxEventStreams int
	}
	err := c.db.Unscoped(ctx).Raw("SELECT name, max_event_streams FROM plans").Scan(&rows).Error
	if err != nil {
		if n, ok := c.caps[plan]; ok {
			return n, nil
		}
		return 0, fmt.Errorf("events: read plans' stream caps: %w", err)
	}
	c.caps = make(map[string]int, len(rows))
	for _, r := range rows {
		c.caps[r.Name] = r.MaxEventStreams
	}
	c.loadedAt = time.Now()
	n, ok := c.caps[plan]
	if !ok {
		return 0, fmt.Errorf("events: plan %q has no stream cap", plan)
	}
	return n, nil
}
