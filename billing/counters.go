package billing

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// periodLayout is how a billing period is written: "YYYY-MM".
const periodLayout = "2006-01"

// PeriodOf returns the billing period of t: its UTC month, "YYYY-MM".
func PeriodOf(t time.Time) string { return t.UTC().Format(periodLayout) }

// PeriodStart returns the first instant of period ("YYYY-MM"), in UTC.
func PeriodStart(period string) (time.Time, error) {
	t, err := time.Parse(periodLayout, period)
	if err != nil {
		return time.Time{}, fmt.Errorf("billing period %q is not YYYY-MM", period)
	}
	return t, nil
}

// PeriodEnd returns the first instant after period: midnight UTC of the
// first day of the next month, when its quotas reset.
func PeriodEnd(period string) (time.Time, error) {
	t, err := PeriodStart(period)
	if err != nil {
		return time.Time{}, err
	}
	return t.AddDate(0, 1, 0), nil
}

// periods is what billing_periods said inside one transaction.
type periods struct {
	closed map[string]bool
	latest string // the latest closed period, or ""
}

// lockPeriods takes ROW EXCLUSIVE on usage_counters and then reads the
// closed periods. billing_close_period takes SHARE on usage_counters before
// it closes a period, so either this transaction commits before the close
// reads the counters, or it waits for the close and then sees the period
// closed: a count never lands in a period after its lines were computed.
func lockPeriods(tx *gorm.DB) (periods, error) {
	if err := tx.Exec(lockCountersSQL).Error; err != nil {
		return periods{}, fmt.Errorf("lock usage_counters: %w", err)
	}
	var closed []string
	if err := tx.Raw(closedPeriodsSQL).Scan(&closed).Error; err != nil {
		return periods{}, fmt.Errorf("read closed periods: %w", err)
	}
	return newPeriods(closed), nil
}

// The statements of lockPeriods, for writers that do not go through GORM.
const (
	lockCountersSQL  = "LOCK TABLE usage_counters IN ROW EXCLUSIVE MODE"
	closedPeriodsSQL = "SELECT period FROM billing_periods"
)

// newPeriods returns what the closed periods in billing_periods mean.
func newPeriods(closed []string) periods {
	p := periods{closed: make(map[string]bool, len(closed))}
	for _, c := range closed {
		p.closed[c] = true
		if c > p.latest {
			p.latest = c
		}
	}
	return p
}

// attribute returns the billing period of a count made in hour: the hour's
// month, or, when that month is closed, the first period after the latest
// closed one (an adjustment; an issued export never changes).
func (p periods) attribute(hour time.Time) string {
	period := PeriodOf(hour)
	if !p.closed[period] {
		return period
	}
	next := p.latest
	for p.closed[next] {
		start, err := PeriodStart(next)
		if err != nil { // billing_periods checks the format; unreachable
			return period
		}
		next = PeriodOf(start.AddDate(0, 1, 0))
	}
	return next
}

// count is an amount to add to one meter of one hour.
type count struct {
	meter    string
	currency string
	hour     time.Time // UTC, truncated to the hour
	n        int64
}

// addCounts adds counts to tenantID's usage_counters in tx (a transaction
// of that tenant): counters are summed, gauges keep the highest value of
// the hour.
func addCounts(tx *gorm.DB, tenantID uuid.UUID, counts []count) error {
	if len(counts) == 0 {
		return nil
	}
	p, err := lockPeriods(tx)
	if err != nil {
		return err
	}
	var st statement
	if err := st.upsert(p, tenantID, counts, false); err != nil || st.sql.Len() == 0 {
		return err
	}
	if err := tx.Exec(st.sql.String(), st.args...).Error; err != nil {
		return fmt.Errorf("add usage counts: %w", err)
	}
	return nil
}

// statement is SQL being built with its arguments: ? placeholders for
// GORM, or $n ones (dollar) for pgx (see Counter.write).
type statement struct {
	sql    strings.Builder
	args   []any
	dollar bool
}

// arg writes a placeholder for v, cast to typ.
func (s *statement) arg(v any, typ string) {
	s.args = append(s.args, v)
	if s.dollar {
		s.sql.WriteString("$" + strconv.Itoa(len(s.args)))
	} else {
		s.sql.WriteByte('?')
	}
	s.sql.WriteString("::" + typ)
}

// upsert writes the statement that adds counts to tenantID's
// usage_counters, in a transaction where lockPeriods returned p and
// tenantID is the tenant set for row-level security. With ifTenant the
// statement writes nothing when the tenant no longer exists (deleted since
// it was counted) instead of failing on the foreign key.
func (s *statement) upsert(p periods, tenantID uuid.UUID, counts []count, ifTenant bool) error {
	type rowKey struct {
		meter, currency string
		hour            int64
	}
	merged := map[rowKey]int64{}
	for _, c := range counts {
		if c.n < 0 {
			return fmt.Errorf("negative count %d of %s", c.n, c.meter)
		}
		k := rowKey{c.meter, c.currency, c.hour.Unix()}
		if IsGauge(c.meter) {
			merged[k] = max(merged[k], c.n)
		} else {
			merged[k] += c.n
		}
	}
	if len(merged) == 0 {
		return nil
	}
	keys := make([]rowKey, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	// One order for every writer, so concurrent upserts of the same rows
	// queue instead of deadlocking.
	slices.SortFunc(keys, func(a, b rowKey) int {
		if c := strings.Compare(a.meter, b.meter); c != 0 {
			return c
		}
		if c := strings.Compare(a.currency, b.currency); c != 0 {
			return c
		}
		return int(a.hour - b.hour)
	})
	// updated_at is now() in the inserted row, and the conflict's update
	// takes it from EXCLUDED: Citus refuses a non-IMMUTABLE function in DO
	// UPDATE SET (it would run on the worker), while the row's values are
	// evaluated on the coordinator. The same transaction time on plain
	// PostgreSQL.
	s.sql.WriteString("INSERT INTO usage_counters (tenant_id, meter, currency, hour, billing_period, quantity, updated_at) ")
	s.sql.WriteString("SELECT v.tenant_id, v.meter, v.currency, v.hour, v.billing_period, v.quantity, now() FROM (VALUES ")
	for i, k := range keys {
		if i > 0 {
			s.sql.WriteString(", ")
		}
		hour := time.Unix(k.hour, 0).UTC()
		s.sql.WriteByte('(')
		s.arg(tenantID.String(), "uuid")
		s.sql.WriteString(", ")
		s.arg(k.meter, "text")
		s.sql.WriteString(", ")
		s.arg(k.currency, "text")
		s.sql.WriteString(", ")
		s.arg(hour, "timestamptz")
		s.sql.WriteString(", ")
		s.arg(p.attribute(hour), "text")
		s.sql.WriteString(", ")
		s.arg(merged[k], "bigint")
		s.sql.WriteByte(')')
	}
	s.sql.WriteString(") AS v (tenant_id, meter, currency, hour, billing_period, quantity)")
	if ifTenant {
		s.sql.WriteString(" WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = ")
		s.arg(tenantID.String(), "uuid")
		s.sql.WriteString(")")
	}
	s.sql.WriteString(` ON CONFLICT (tenant_id, meter, currency, hour, billing_period) DO UPDATE SET
		quantity = CASE WHEN usage_counters.meter = '` + MeterActiveProducts + `'
		                THEN greatest(usage_counters.quantity, EXCLUDED.quantity)
		                ELSE usage_counters.quantity + EXCLUDED.quantity END,
		updated_at = EXCLUDED.updated_at`)
	return nil
}

// applyOnce adds counts in tx unless name is already in usage_flushes; it
// records name either way. It reports whether the counts were added. The
// legacy drain (legacy.go) names each Redis hash it applies this way.
func applyOnce(tx *gorm.DB, tenantID uuid.UUID, name string, counts []count) (bool, error) {
	res := tx.Exec("INSERT INTO usage_flushes (flush_key) VALUES (?) ON CONFLICT (flush_key) DO NOTHING", name)
	if res.Error != nil {
		return false, fmt.Errorf("record flush %s: %w", name, res.Error)
	}
	if res.RowsAffected == 0 {
		return false, nil
	}
	return true, addCounts(tx, tenantID, counts)
}

// UsedInPeriod returns what the tenant of tx (a db.WithTenant transaction)
// used in a billing period according to usage_counters, per meter and
// currency: the sum of counts, the highest hourly value of gauges. It does
// not include what replicas hold in memory and have not flushed yet (about
// the last second of api_requests; see Counter).
func UsedInPeriod(ctx context.Context, tx *gorm.DB, period string) (map[MeterKey]int64, error) {
	if _, err := PeriodStart(period); err != nil {
		return nil, err
	}
	var rows []struct {
		Meter    string
		Currency string
		Used     int64
	}
	err := tx.WithContext(ctx).Raw(`
		SELECT meter, currency,
		       (CASE WHEN meter = ? THEN max(quantity) ELSE sum(quantity) END)::bigint AS used
		FROM usage_counters
		WHERE billing_period = ?
		GROUP BY meter, currency`, MeterActiveProducts, period).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("usage in %s: %w", period, err)
	}
	out := make(map[MeterKey]int64, len(rows))
	for _, r := range rows {
		out[MeterKey{r.Meter, r.Currency}] = r.Used
	}
	return out, nil
}
