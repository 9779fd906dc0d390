package auth

import (
	"context"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/fault"
)

// FailureLimit is how many failed authentications one client address may
// make before its credentials are no longer verified: Burst at once, then
// one more every Every. Only failures use it up; see Service.AuthenticateFrom.
type FailureLimit struct {
	Burst int
	Every time.Duration
}

// DefaultFailureLimit lets an address fail 50 times at once and once a
// second after that: a client with a mistyped key notices long before, and
// random keys reach the database about once a second per address instead
// of thousands of times.
var DefaultFailureLimit = FailureLimit{Burst: 50, Every: time.Second}

const (
	throttleWait      = 500 * time.Millisecond // Redis call timeout of a throttle decision
	throttleProbe     = time.Second            // how long a failed Redis is not asked again
	throttleWarnEvery = 10 * time.Second       // at most one warning per this while Redis fails
	throttleClients   = 100_000                // addresses the in-memory fallback remembers
)

// throttle limits failed authentications per client address (an IPv4
// address, or the /64 of an IPv6 one) with GCRA: in Redis through
// redis_rate, so that every replica shares one budget per address, and in
// memory while Redis cannot answer. Each verification of an unknown
// credential first takes one failure from the address's budget, before
// any lookup, and gives it back when the credential turns out valid; an
// address without budget left is refused (429) with no lookup at all.
type throttle struct {
	limiter *redis_rate.Limiter // nil without Redis
	limit   redis_rate.Limit
	local   *localGCRA
	log     *slog.Logger

	brokenUntil atomic.Int64 // Unix nanoseconds; Redis is not asked before
	warnedAt    atomic.Int64
}

func newThrottle(rdb *redis.Client, l FailureLimit, log *slog.Logger) *throttle {
	if l.Burst <= 0 || l.Every <= 0 {
		l = DefaultFailureLimit
	}
	// redis_rate counts Rate events per Period; one per Every is
	// 60 per 60·Every, which keeps whole numbers for any Every.
	t := &throttle{
		limit: redis_rate.Limit{Rate: 60, Period: 60 * l.Every, Burst: l.Burst},
		local: newLocalGCRA(l, throttleClients),
		log:   log,
	}
	if rdb != nil {
		t.limiter = redis_rate.NewLimiter(rdb)
	}
	return t
}

// ticket is one failure taken from a client's budget, to give back when
// the credential was valid after all.
type ticket struct {
	key   string
	redis bool // taken in Redis (else in memory)
}

// clientKey is the budget a client address uses: IPv6 clients usually
// hold a whole /64, so it is one budget.
func clientKey(client string) string {
	addr, err := netip.ParseAddr(client)
	if err != nil {
		return "unknown"
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().String()
	}
	return addr.String()
}

// redisKey is the key (after redis_rate's "rate:") of a client's budget,
// hash-tagged for Redis Cluster.
func redisKey(key string) string { return "authfail:{" + key + "}" }

// take takes one failure from client's budget. With none left it returns
// a rate_limited error carrying how long to wait.
func (t *throttle) take(ctx context.Context, client string) (ticket, error) {
	key := clientKey(client)
	if t.useRedis() {
		rctx, cancel := context.WithTimeout(ctx, throttleWait)
		res, err := t.limiter.AllowN(rctx, redisKey(key), t.limit, 1)
		cancel()
		if err == nil {
			if res.Allowed < 1 {
				return ticket{}, throttled(res.RetryAfter)
			}
			return ticket{key: key, redis: true}, nil
		}
		t.redisFailed(ctx, err)
	}
	if wait := t.local.take(key, time.Now()); wait > 0 {
		return ticket{}, throttled(wait)
	}
	return ticket{key: key}, nil
}

// giveBack returns the failure tk took: the credential was valid, or its
// verification failed for a reason that is not the client's.
func (t *throttle) giveBack(ctx context.Context, tk ticket) {
	if tk.key == "" {
		return
	}
	if !tk.redis {
		t.local.give(tk.key, time.Now())
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), throttleWait)
	defer cancel()
	// A negative cost moves the GCRA state back by one emission interval.
	if _, err := t.limiter.AllowN(rctx, redisKey(tk.key), t.limit, -1); err != nil {
		t.redisFailed(ctx, err)
	}
}

func (t *throttle) useRedis() bool {
	return t.limiter != nil && time.Now().UnixNano() >= t.brokenUntil.Load()
}

func (t *throttle) redisFailed(ctx context.Context, err error) {
	now := time.Now()
	t.brokenUntil.Store(now.Add(throttleProbe).UnixNano())
	if last := t.warnedAt.Load(); now.UnixNano()-last >= int64(throttleWarnEvery) && t.warnedAt.CompareAndSwap(last, now.UnixNano()) {
		t.log.WarnContext(ctx, "auth: failed-authentication throttle cannot reach Redis; counting in memory, per replica", "err", err)
	}
}

// throttled is the error of a client whose failure budget is used up.
func throttled(wait time.Duration) error {
	secs := max(1, int64(math.Ceil(wait.Seconds())))
	return fault.Later(fault.RateLimited,
		"too many failed authentications from this address; retry after the time in Retry-After",
		time.Duration(secs)*time.Second)
}

// localGCRA is the in-memory fallback of the throttle: the same GCRA per
// client key, in a bounded LRU (an address pushed out starts afresh).
type localGCRA struct {
	mu       sync.Mutex
	tats     *lru.Cache[string, time.Time] // theoretical arrival time per key
	interval time.Duration                 // one failure regained every
	offset   time.Duration                 // Burst intervals
}

func newLocalGCRA(l FailureLimit, size int) *localGCRA {
	c, err := lru.New[string, time.Time](size)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &localGCRA{tats: c, interval: l.Every, offset: time.Duration(l.Burst) * l.Every}
}

// take takes one failure from key's budget at now, or returns how long
// until one is left.
func (g *localGCRA) take(key string, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	tat, ok := g.tats.Get(key)
	if !ok || tat.Before(now) {
		tat = now
	}
	next := tat.Add(g.interval)
	if over := next.Sub(now) - g.offset; over > 0 {
		return over
	}
	g.tats.Add(key, next)
	return 0
}

// give returns one failure to key's budget.
func (g *localGCRA) give(key string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	tat, ok := g.tats.Get(key)
	if !ok {
		return
	}
	if tat = tat.Add(-g.interval); tat.After(now) {
		g.tats.Add(key, tat)
	} else {
		g.tats.Remove(key)
	}
}
