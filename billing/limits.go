package billing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/tenantd/tenantd/internal/db"
)

const (
	planTTL    = 30 * time.Second // how long plans are cached
	leaseTTL   = time.Second      // how long a replica may hold tokens it took
	warnEvery  = 10 * time.Second // at most one warning per this while Redis fails
	lookupWait = time.Second      // Redis call timeout of a rate limit decision
	probeEvery = time.Second      // how often a failed Redis is tried again
)

// LimitOptions tune Limits; zero values take the defaults.
type LimitOptions struct {
	// FailOpen lets requests through when Redis cannot decide their rate
	// limit (RATE_LIMIT_FAIL=open); otherwise they get 503.
	FailOpen bool
	// Now is the clock of quota periods (default time.Now). Rate limits run
	// on Redis's clock.
	Now func() time.Time
	// Counter, when set, is this replica's Counter: quotas then also see
	// the counts it has not flushed to PostgreSQL yet.
	Counter *Counter
	// OnRedisError is called for each request whose rate limit was decided
	// without Redis (failOpen says how): a hook for a metric.
	OnRedisError func(failOpen bool)
	// MaxLease caps how many tokens one Redis call takes for this replica
	// (default: a tenth of the plan's rate per second, at least 1; 1 asks
	// Redis for every request).
	MaxLease int
	// QuotaRoutes maps "METHOD /full/route/path" to the meter a request of
	// that route uses up besides api_requests; default DefaultQuotaRoutes.
	QuotaRoutes map[string]string
}

// DefaultQuotaRoutes are the routes that use up a meter of their own.
var DefaultQuotaRoutes = map[string]string{
	http.MethodPost + " /v1/orders": MeterOrdersCreated,
}

// Limits enforces plans: rate limits per tenant and monthly quotas.
type Limits struct {
	limiter *redis_rate.Limiter
	rdb     *redis.Client
	d       *db.DB
	log     *slog.Logger
	opts    LimitOptions

	plans     atomic.Pointer[planTable]
	reloading atomic.Bool
	loadMu    sync.Mutex
	missAt    time.Time // last load for an unknown plan; guarded by loadMu

	routes map[route]string // QuotaRoutes
	period atomic.Pointer[periodSpan]

	buckets sync.Map // uuid.UUID → *bucket
	usages  sync.Map // uuid.UUID → *usage

	redisErrors atomic.Int64
	brokenUntil atomic.Int64 // Unix nanoseconds; Redis is not asked before
	warnedAt    atomic.Int64
	quotaWarnAt atomic.Int64
	refreshes   singleflight.Group
}

// NewLimits returns Limits reading plans through d and keeping rate limit
// state in rdb.
func NewLimits(rdb *redis.Client, d *db.DB, log *slog.Logger, opts LimitOptions) *Limits {
	if log == nil {
		log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.QuotaRoutes == nil {
		opts.QuotaRoutes = DefaultQuotaRoutes
	}
	routes := map[route]string{}
	for k, meter := range opts.QuotaRoutes {
		method, path, _ := strings.Cut(k, " ")
		routes[route{method, path}] = meter
	}
	return &Limits{limiter: redis_rate.NewLimiter(rdb), rdb: rdb, d: d, log: log.With("component", "billing"), opts: opts, routes: routes}
}

// RedisErrors returns how many requests had their rate limit decided
// without Redis since start: a counter for metrics.
func (l *Limits) RedisErrors() int64 { return l.redisErrors.Load() }

// planTable is the cached plan catalogue.
type planTable struct {
	stale atomic.Bool // set planTTL after loading, by a timer: no clock read per request
	plans map[string]*planLimits
}

// planLimits is what one plan allows.
type planLimits struct {
	name   string
	limit  redis_rate.Limit
	lease  int
	meters map[string]meterLimit
}

// key is the Redis key (after redis_rate's "rate:") of tenantID's rate
// limit under this plan. The plan is part of it because GCRA state is a
// time: debt run up under a slow plan would otherwise hold back the first
// seconds of a faster one.
func (p *planLimits) key(tenantID uuid.UUID) string {
	return "rl:{" + tenantID.String() + "}:" + p.name
}

// meterLimit is one meter's monthly allowance in a plan.
type meterLimit struct {
	included int64
	hard     bool
	currency string
}

// plan returns the limits of the named plan from the cache, refreshing it
// in the background when old and at once (at most once a second) for a
// plan it does not know.
func (l *Limits) plan(ctx context.Context, name string) (*planLimits, bool) {
	t := l.plans.Load()
	if t != nil {
		if t.stale.Load() && l.reloading.CompareAndSwap(false, true) {
			go func() {
				defer l.reloading.Store(false)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := l.loadPlans(ctx); err != nil {
					l.log.Warn("billing: reload plans; keeping the cached ones", "err", err)
				}
			}()
		}
		if p, ok := t.plans[name]; ok {
			return p, true
		}
	}
	l.loadMu.Lock()
	defer l.loadMu.Unlock()
	if now := l.plans.Load(); now != t && now != nil {
		p, ok := now.plans[name]
		return p, ok
	}
	if time.Since(l.missAt) < time.Second {
		return nil, false
	}
	l.missAt = time.Now()
	if err := l.loadPlans(ctx); err != nil {
		l.log.Warn("billing: load plans", "err", err)
		return nil, false
	}
	p, ok := l.plans.Load().plans[name]
	return p, ok
}

// loadPlans reads plans and plan_meters into the cache.
func (l *Limits) loadPlans(ctx context.Context) error {
	var plans []struct {
		Name          string
		RatePerSecond int
		Burst         int
	}
	if err := l.d.Unscoped(ctx).Raw("SELECT name, rate_per_second, burst FROM plans").Scan(&plans).Error; err != nil {
		return fmt.Errorf("read plans: %w", err)
	}
	var meters []struct {
		Plan, Meter, Currency string
		Included              int64
		HardLimit             bool
	}
	if err := l.d.Unscoped(ctx).Raw("SELECT plan, meter, currency, included, hard_limit FROM plan_meters").Scan(&meters).Error; err != nil {
		return fmt.Errorf("read plan meters: %w", err)
	}
	t := &planTable{plans: make(map[string]*planLimits, len(plans))}
	for _, p := range plans {
		lease := max(1, p.RatePerSecond/10)
		if l.opts.MaxLease > 0 {
			lease = min(lease, l.opts.MaxLease)
		}
		lease = min(lease, max(1, p.Burst/2))
		t.plans[p.Name] = &planLimits{
			name:   p.Name,
			limit:  redis_rate.Limit{Rate: p.RatePerSecond, Burst: p.Burst, Period: time.Second},
			lease:  lease,
			meters: map[string]meterLimit{},
		}
	}
	for _, m := range meters {
		if p := t.plans[m.Plan]; p != nil {
			p.meters[m.Meter] = meterLimit{included: m.Included, hard: m.HardLimit, currency: m.Currency}
		}
	}
	l.plans.Store(t)
	time.AfterFunc(planTTL, func() { t.stale.Store(true) })
	return nil
}

// bucket is this replica's view of one tenant's rate limit: tokens it took
// from Redis and may hand out until expires, or a refusal Redis gave that
// stands until blockedUntil.
type bucket struct {
	mu           sync.Mutex
	plan         *planLimits
	tokens       int
	expires      time.Time
	blockedUntil time.Time
	remaining    int       // what Redis said remains beyond the tokens
	resetAt      time.Time // when Redis said the bucket is full again
	fetching     chan struct{}
}

// decision is a rate limit verdict and what the headers say.
type decision struct {
	allowed     bool
	unavailable bool // fail closed: Redis could not decide
	remaining   int
	reset       time.Duration
	retryAfter  time.Duration
}

// RateState is what the RateLimit response headers say about a tenant's
// rate limit after a decision.
type RateState struct {
	// Limit is the plan's burst (RateLimit-Limit).
	Limit int
	// Remaining is how many requests the tenant may still send at once
	// (RateLimit-Remaining).
	Remaining int
	// Reset is the whole seconds until the bucket is full again
	// (RateLimit-Reset).
	Reset int
}

// AllowRequest decides one request of tenantID under the named plan
// against its rate and burst (GCRA in Redis, shared by every replica).
// known is false when no limits are known for the plan (plan loading
// logged why): the request passes and has no rate limit state. Otherwise
// state is what the response headers say, and err refuses the request: a
// *RateLimitError (ErrRateLimited) over the limit, or, when Redis cannot
// decide and rate limits fail closed, an error that is ErrRateLimitUnavailable
// (503 service_unavailable with Retry-After, already logged here at most
// once per 10s).
func (l *Limits) AllowRequest(ctx context.Context, tenantID uuid.UUID, plan string) (state RateState, known bool, err error) {
	pl, ok := l.plan(ctx, plan)
	if !ok {
		return RateState{}, false, nil
	}
	d := l.allow(ctx, tenantID, pl)
	state = RateState{Limit: pl.limit.Burst, Remaining: max(d.remaining, 0), Reset: ceilSeconds(d.reset)}
	switch {
	case d.allowed:
		return state, true, nil
	case d.unavailable:
		return state, true, ErrRateLimitUnavailable
	}
	return state, true, &RateLimitError{Rate: pl.limit.Rate, Burst: pl.limit.Burst,
		RetryAfter: time.Duration(max(ceilSeconds(d.retryAfter), 1)) * time.Second}
}

// allow decides one request of tenantID under pl.
func (l *Limits) allow(ctx context.Context, tenantID uuid.UUID, pl *planLimits) decision {
	v, ok := l.buckets.Load(tenantID)
	if !ok {
		v, _ = l.buckets.LoadOrStore(tenantID, &bucket{})
	}
	b := v.(*bucket)
	for {
		now := time.Now()
		b.mu.Lock()
		if b.plan != pl { // new tenant, its plan changed, or plans reloaded
			b.plan, b.tokens, b.blockedUntil = pl, 0, time.Time{}
		}
		if now.Before(b.blockedUntil) {
			d := decision{retryAfter: b.blockedUntil.Sub(now), reset: b.resetAt.Sub(now)}
			b.mu.Unlock()
			return d
		}
		if b.tokens > 0 && now.Before(b.expires) {
			b.tokens--
			d := decision{allowed: true, remaining: b.remaining + b.tokens, reset: b.resetAt.Sub(now)}
			b.mu.Unlock()
			return d
		}
		if now.UnixNano() < l.brokenUntil.Load() {
			b.mu.Unlock()
			return l.withoutRedis(pl, nil)
		}
		if wait := b.fetching; wait != nil {
			b.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return decision{unavailable: true}
			}
		}
		done := make(chan struct{})
		b.fetching = done
		b.mu.Unlock()

		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupWait)
		res, err := l.limiter.AllowAtMost(rctx, pl.key(tenantID), pl.limit, pl.lease)
		cancel()

		now = time.Now()
		b.mu.Lock()
		b.fetching = nil
		close(done)
		if err != nil {
			b.mu.Unlock()
			return l.withoutRedis(pl, err)
		}
		b.resetAt = now.Add(res.ResetAfter)
		b.remaining = res.Remaining
		if res.Allowed == 0 {
			b.tokens = 0
			b.blockedUntil = now.Add(res.RetryAfter)
			d := decision{retryAfter: res.RetryAfter, reset: res.ResetAfter}
			b.mu.Unlock()
			return d
		}
		b.tokens, b.expires = res.Allowed-1, now.Add(leaseTTL)
		d := decision{allowed: true, remaining: b.remaining + b.tokens, reset: res.ResetAfter}
		b.mu.Unlock()
		return d
	}
}

// withoutRedis decides a request Redis could not: open or closed as
// configured. err is the failure that just happened, or nil while Redis
// is left alone after one.
func (l *Limits) withoutRedis(pl *planLimits, err error) decision {
	now := time.Now()
	if err != nil {
		l.brokenUntil.Store(now.Add(probeEvery).UnixNano())
		if last := l.warnedAt.Load(); now.UnixNano()-last > int64(warnEvery) && l.warnedAt.CompareAndSwap(last, now.UnixNano()) {
			mode := "closed: refusing requests"
			if l.opts.FailOpen {
				mode = "open: not limiting requests"
			}
			l.log.Warn("billing: rate limiting cannot reach redis; failing "+mode, "err", err)
		}
	}
	l.redisErrors.Add(1)
	if l.opts.OnRedisError != nil {
		l.opts.OnRedisError(l.opts.FailOpen)
	}
	if l.opts.FailOpen {
		return decision{allowed: true, remaining: pl.limit.Burst}
	}
	return decision{unavailable: true}
}
