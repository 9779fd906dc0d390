package billing

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// How long a tenant's usage is trusted before it is read again: the time
// the tenant would need, at its full rate limit, to use up half of what is
// left, within these bounds.
const (
	minUsageTTL = time.Second
	maxUsageTTL = 30 * time.Second
)

// usage is this replica's view of one tenant's usage of its hard limits in
// one period: what was read at fetchedAt, plus what this replica admitted
// since.
type usage struct {
	mu         sync.Mutex
	period     string
	plan       string           // whose hard limits used covers
	used       map[string]int64 // per hard-limited meter
	since      map[string]int64
	fetchedAt  time.Time
	ttl        time.Duration
	refreshing bool
}

// route is a method and a gin route path.
type route struct{ method, path string }

// periodSpan is a billing period and its bounds.
type periodSpan struct {
	name       string
	start, end time.Time
}

// periodOf is PeriodOf, remembering the last period so that the hot path
// does not format a date.
func (l *Limits) periodOf(now time.Time) string {
	if p := l.period.Load(); p != nil && !now.Before(p.start) && now.Before(p.end) {
		return p.name
	}
	name := PeriodOf(now)
	start, err := PeriodStart(name)
	if err != nil { // unreachable: name is well formed
		return name
	}
	l.period.Store(&periodSpan{name: name, start: start, end: start.AddDate(0, 1, 0)})
	return name
}

// quotaProblem is the 429 quota_exceeded body: the problem document plus
// which meter, its limit, the usage and when it resets.
type quotaProblem struct {
	httpx.Problem
	Meter    string    `json:"meter"`
	Limit    int64     `json:"limit"`
	Used     int64     `json:"used"`
	ResetsAt time.Time `json:"resets_at"`
}

// Quota refuses requests with 429 quota_exceeded once a hard-limited meter
// of the tenant's plan is used up for the current period: api_requests on
// every request, and the meter of the route in QuotaRoutes. Soft limits
// never refuse. If usage cannot be read the request passes (logged). Put it
// after RateLimit.
func (l *Limits) Quota() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		p, ok := identity.FromContext(ctx)
		if !ok || p.TenantID == uuid.Nil {
			c.Next()
			return
		}
		pl, ok := l.plan(ctx, p.Plan)
		if !ok {
			c.Next()
			return
		}
		var meters [2]string
		n := 0
		if pl.meters[MeterAPIRequests].hard {
			meters[n], n = MeterAPIRequests, n+1
		}
		if m, ok := l.routes[route{c.Request.Method, c.FullPath()}]; ok && pl.meters[m].hard {
			meters[n], n = m, n+1
		}
		if n == 0 {
			c.Next()
			return
		}
		now := l.opts.Now()
		period := l.periodOf(now)
		meter, used, err := l.admit(ctx, p.TenantID, pl, period, now, meters[:n])
		if err != nil {
			if t, last := time.Now().UnixNano(), l.quotaWarnAt.Load(); t-last > int64(warnEvery) && l.quotaWarnAt.CompareAndSwap(last, t) {
				l.log.Warn("billing: cannot read usage; not enforcing quotas", "err", err)
			}
			c.Next()
			return
		}
		if meter == "" {
			c.Next()
			return
		}
		markRejected(c)
		limit := pl.meters[meter].included
		resets, _ := PeriodEnd(period) // period comes from PeriodOf
		e := fault.New(fault.QuotaExceeded, fmt.Sprintf("the %s quota of %d for %s is used up; it resets at %s",
			meter, limit, period, resets.Format(time.RFC3339)))
		prob := httpx.ProblemFor(e)
		prob.Instance = c.Request.URL.Path
		c.Error(e) //nolint:errcheck // recorded for the access log
		c.Header("Content-Type", "application/problem+json")
		c.Header(headerRetryAfter, strconv.Itoa(max(ceilSeconds(resets.Sub(now)), 1)))
		c.AbortWithStatusJSON(prob.Status, quotaProblem{Problem: prob, Meter: meter, Limit: limit, Used: used, ResetsAt: resets})
	}
}

// admit counts one request against meters unless one is used up; it
// returns the used-up meter and its usage, or "".
func (l *Limits) admit(ctx context.Context, tenantID uuid.UUID, pl *planLimits, period string, now time.Time, meters []string) (string, int64, error) {
	v, ok := l.usages.Load(tenantID)
	if !ok {
		v, _ = l.usages.LoadOrStore(tenantID, &usage{})
	}
	u := v.(*usage)
	u.mu.Lock()
	stale := now.Sub(u.fetchedAt) > u.ttl
	// Read synchronously the first time in a period, and when the tenant is
	// close to a limit (its usage is trusted for the shortest time); else
	// answer from what is known and read again in the background.
	if u.period != period || u.used == nil || u.plan != pl.name || (stale && u.ttl <= minUsageTTL) {
		u.mu.Unlock()
		if err := l.refresh(ctx, tenantID, pl, period, now); err != nil {
			return "", 0, err
		}
		u.mu.Lock()
		if u.period != period {
			u.mu.Unlock()
			return "", 0, nil // the clock moved on meanwhile
		}
	} else if stale && !u.refreshing {
		u.refreshing = true
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := l.refresh(ctx, tenantID, pl, period, now); err != nil {
				l.log.Debug("billing: refresh usage", "tenant_id", tenantID, "err", err)
			}
		}()
	}
	defer u.mu.Unlock()
	for _, m := range meters {
		if used := u.used[m] + u.since[m]; used >= pl.meters[m].included {
			return m, used, nil
		}
	}
	for _, m := range meters {
		u.since[m]++
	}
	return "", 0, nil
}

// refresh reads tenantID's usage of its hard limits in period again; one
// read per tenant and period at a time.
func (l *Limits) refresh(ctx context.Context, tenantID uuid.UUID, pl *planLimits, period string, now time.Time) error {
	_, err, _ := l.refreshes.Do(tenantID.String()+"/"+period, func() (any, error) {
		v, _ := l.usages.LoadOrStore(tenantID, &usage{})
		u := v.(*usage)
		u.mu.Lock()
		var before map[string]int64
		if u.period == period {
			before = maps.Clone(u.since)
		}
		u.mu.Unlock()

		used, err := l.readUsage(ctx, tenantID, pl, period)

		u.mu.Lock()
		defer u.mu.Unlock()
		u.refreshing = false
		if err != nil {
			return nil, err
		}
		switch {
		case u.period == period: // what was admitted during the read stays
			for m, n := range before {
				u.since[m] -= n
			}
		case u.period < period:
			u.period, u.since = period, map[string]int64{}
		default:
			return nil, nil // a later period was read meanwhile
		}
		u.used, u.fetchedAt, u.ttl, u.plan = used, now, trustFor(pl, used), pl.name
		return nil, nil
	})
	return err
}

// trustFor is how long used may be trusted: the time the tenant needs, at
// its plan's full rate, to use up half of what is left of its tightest hard
// limit.
func trustFor(pl *planLimits, used map[string]int64) time.Duration {
	ttl := maxUsageTTL
	perSecond := float64(pl.limit.Rate + pl.limit.Burst)
	for m, lim := range pl.meters {
		if !lim.hard {
			continue
		}
		left := float64(lim.included - used[m])
		ttl = min(ttl, time.Duration(left/perSecond/2*float64(time.Second)))
	}
	return max(ttl, minUsageTTL)
}

// readUsage returns tenantID's usage in period of each hard-limited meter
// of its plan: usage_counters, plus what this replica counted and has not
// flushed yet (about the last second). A meter counted in currencies counts
// only its plan currency.
func (l *Limits) readUsage(ctx context.Context, tenantID uuid.UUID, pl *planLimits, period string) (map[string]int64, error) {
	start, err := PeriodStart(period)
	if err != nil {
		return nil, err
	}
	var all map[MeterKey]int64
	var applied uint64
	err = l.d.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		var err error
		if all, err = UsedInPeriod(ctx, tx, period); err != nil {
			return err
		}
		if l.opts.Counter != nil {
			// After the counters, as unflushed requires.
			applied, err = l.opts.Counter.appliedSeq(ctx, tx)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if l.opts.Counter != nil {
		for k, n := range l.opts.Counter.unflushed(tenantID, start, start.AddDate(0, 1, 0), applied) {
			if IsGauge(k.Meter) {
				all[k] = max(all[k], n)
			} else {
				all[k] += n
			}
		}
	}

	used := map[string]int64{}
	for m, lim := range pl.meters {
		if !lim.hard {
			continue
		}
		for k, n := range all {
			if k.Meter == m && (k.Currency == "" || k.Currency == lim.currency) {
				used[m] += n
			}
		}
	}
	return used, nil
}
