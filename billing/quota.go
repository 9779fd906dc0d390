package billing

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
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

// AdmitRequest counts one request of tenantID, under the named plan, of
// the route (method and gin route path) against the plan's hard-limited
// meters of the current period: api_requests on every request, and the
// meter of the route in QuotaRoutes. Once one is used up it returns a
// *QuotaError (ErrQuotaExceeded) instead. Soft limits never refuse. If
// usage cannot be read the request is admitted (logged at most once per
// 10s).
func (l *Limits) AdmitRequest(ctx context.Context, tenantID uuid.UUID, plan, method, path string) error {
	pl, ok := l.plan(ctx, plan)
	if !ok {
		return nil
	}
	var meters [2]string
	n := 0
	if pl.meters[MeterAPIRequests].hard {
		meters[n], n = MeterAPIRequests, n+1
	}
	if m, ok := l.routes[route{method, path}]; ok && pl.meters[m].hard {
		meters[n], n = m, n+1
	}
	if n == 0 {
		return nil
	}
	now := l.opts.Now()
	period := l.periodOf(now)
	meter, used, err := l.admit(ctx, tenantID, pl, period, now, meters[:n])
	if err != nil {
		if t, last := time.Now().UnixNano(), l.quotaWarnAt.Load(); t-last > int64(warnEvery) && l.quotaWarnAt.CompareAndSwap(last, t) {
			l.log.Warn("billing: cannot read usage; not enforcing quotas", "err", err)
		}
		return nil
	}
	if meter == "" {
		return nil
	}
	resets, _ := PeriodEnd(period) // period comes from PeriodOf
	return &QuotaError{Meter: meter, Period: period, Limit: pl.meters[meter].included, Used: used, ResetsAt: resets,
		RetryAfter: time.Duration(max(ceilSeconds(resets.Sub(now)), 1)) * time.Second}
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
