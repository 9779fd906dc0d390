package billing

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
)

// Usage reports: what tenants used of each meter of their plan in a billing
// period, against what the plan includes, for GET /v1/usage and
// GET /admin/v1/usage. The numbers are those of usage_counters, under the
// tenant's current plan: every replica writes its request counts there
// about once a second, so they lag the requests by about a second, and
// every replica answers the same.

// UsageReport is one tenant's usage in one billing period.
type UsageReport struct {
	TenantID   uuid.UUID
	TenantSlug string
	Plan       string
	Period     string
	Meters     []MeterUsage
}

// MeterUsage is the use of one meter of the plan (per currency, for meters
// counted in a currency) in a period.
type MeterUsage struct {
	Meter string
	// Currency is the currency the meter counts in (payment_volume, in minor
	// units); "" for meters that count things.
	Currency string
	Used     int64
	Included int64
	// Remaining is what is left of the included quantity.
	Remaining int64
	// Overage is the billable quantity so far: used beyond included under a
	// soft limit; always 0 under a hard limit, where usage is refused instead.
	Overage int64
	// OverageAmount is what the overage costs so far, in minor units of
	// PriceCurrency: ceil(overage / unit size) × unit price.
	OverageAmount int64
	PriceCurrency string
	HardLimit     bool
	// ResetsAt is when the period ends and the included quantity renews.
	ResetsAt time.Time
}

// ErrBadPeriod is the error for a billing period that is not a month
// written YYYY-MM.
var ErrBadPeriod = fault.Invalid(fault.Field("period", "must be a month as YYYY-MM, for example 2026-11"))

var periodPattern = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)

// monthBounds checks a billing period given by a client, "YYYY-MM" with
// a month from 01 to 12 (ErrBadPeriod otherwise), and returns its first
// instant and the first instant of the next month, in UTC.
func monthBounds(period string) (start, end time.Time, err error) {
	if !periodPattern.MatchString(period) {
		return time.Time{}, time.Time{}, ErrBadPeriod
	}
	start, err = time.Parse("2006-01", period)
	if err != nil {
		return time.Time{}, time.Time{}, ErrBadPeriod
	}
	return start, start.AddDate(0, 1, 0), nil
}

// meterTerms is a plan's row of plan_meters: what it includes of a meter and
// what each unit over that costs.
type meterTerms struct {
	Plan      string
	Meter     string
	Included  int64
	UnitPrice int64
	UnitSize  int64
	Currency  string
	HardLimit bool
}

// charge returns the billable quantity and its amount for quantity used:
// nothing under a hard limit; otherwise what exceeds the included quantity,
// charged per started unit of unit_size. Integers only.
func (t meterTerms) charge(quantity int64) (billable, amount int64) {
	if t.HardLimit || quantity <= t.Included {
		return 0, 0
	}
	billable = quantity - t.Included
	size := max(t.UnitSize, 1)
	units := billable / size
	if billable%size != 0 {
		units++
	}
	return billable, units * t.UnitPrice
}

func (t meterTerms) usage(used int64, currency string, resets time.Time) MeterUsage {
	overage, amount := t.charge(used)
	return MeterUsage{
		Meter: t.Meter, Currency: currency, Used: used, Included: t.Included,
		Remaining: max(t.Included-used, 0), Overage: overage, OverageAmount: amount,
		PriceCurrency: t.Currency, HardLimit: t.HardLimit, ResetsAt: resets,
	}
}

// meterUsages builds the report lines of one tenant: one per meter of its
// plan, or one per currency for a meter used in several; meters used but
// missing from the plan (none today) are shown with nothing included.
func meterUsages(terms []meterTerms, used map[MeterKey]int64, resets time.Time) []MeterUsage {
	out := make([]MeterUsage, 0, len(terms))
	seen := map[string]bool{}
	for _, t := range terms {
		seen[t.Meter] = true
		currencies := currenciesOf(used, t.Meter)
		if len(currencies) == 0 {
			out = append(out, t.usage(0, "", resets))
			continue
		}
		for _, c := range currencies {
			out = append(out, t.usage(used[MeterKey{t.Meter, c}], c, resets))
		}
	}
	var extra []MeterKey
	for k := range used {
		if !seen[k.Meter] {
			extra = append(extra, k)
		}
	}
	slices.SortFunc(extra, func(a, b MeterKey) int {
		if c := strings.Compare(a.Meter, b.Meter); c != 0 {
			return c
		}
		return strings.Compare(a.Currency, b.Currency)
	})
	for _, k := range extra {
		out = append(out, meterTerms{Meter: k.Meter, UnitSize: 1}.usage(used[k], k.Currency, resets))
	}
	return out
}

func currenciesOf(used map[MeterKey]int64, meter string) []string {
	var cs []string
	for k := range used {
		if k.Meter == meter {
			cs = append(cs, k.Currency)
		}
	}
	slices.Sort(cs)
	return cs
}

// Reporter answers usage questions from usage_counters.
type Reporter struct {
	db *db.DB
}

// NewReporter returns a Reporter on the runtime pool.
func NewReporter(d *db.DB) *Reporter { return &Reporter{db: d} }

// TenantUsage reports what tenantID used in period, inside the tenant's own
// transaction (row-level security applies).
func (r *Reporter) TenantUsage(ctx context.Context, tenantID uuid.UUID, period string) (UsageReport, error) {
	_, end, err := monthBounds(period)
	if err != nil {
		return UsageReport{}, err
	}
	rep := UsageReport{TenantID: tenantID, Period: period}
	err = r.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		var t struct{ Slug, Plan string }
		res := tx.Raw("SELECT slug, plan FROM tenants WHERE id = ?", tenantID).Scan(&t)
		if res.Error != nil {
			return fmt.Errorf("read tenant: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return fault.New(fault.NotFound, "tenant not found")
		}
		rep.TenantSlug, rep.Plan = t.Slug, t.Plan
		terms, err := loadTerms(tx, t.Plan)
		if err != nil {
			return err
		}
		used, err := UsedInPeriod(ctx, tx, period)
		if err != nil {
			return err
		}
		rep.Meters = meterUsages(terms, used, end)
		return nil
	})
	if err != nil {
		return UsageReport{}, fmt.Errorf("usage of tenant %s in %s: %w", tenantID, period, err)
	}
	return rep, nil
}

// loadTerms reads plan_meters, of one plan or (plan "") of every plan,
// ordered by plan and meter.
func loadTerms(tx *gorm.DB, plan string) ([]meterTerms, error) {
	q := tx.Table("plan_meters").
		Select("plan, meter, included, unit_price, unit_size, currency, hard_limit").
		Order(`plan COLLATE "C", meter COLLATE "C"`)
	if plan != "" {
		q = q.Where("plan = ?", plan)
	}
	var terms []meterTerms
	if err := q.Scan(&terms).Error; err != nil {
		return nil, fmt.Errorf("read plan meters: %w", err)
	}
	return terms, nil
}

// AllUsage reports the usage in period of up to limit+1 tenants with ids
// after after (uuid.Nil: from the first), ordered by id, for the operator.
// The extra report tells the caller there is a next page.
func (r *Reporter) AllUsage(ctx context.Context, period string, after uuid.UUID, limit int) ([]UsageReport, error) {
	_, end, err := monthBounds(period)
	if err != nil {
		return nil, err
	}
	tx := r.db.Worker().Unscoped(ctx)
	terms, err := loadTerms(tx, "")
	if err != nil {
		return nil, err
	}
	byPlan := map[string][]meterTerms{}
	for _, t := range terms {
		byPlan[t.Plan] = append(byPlan[t.Plan], t)
	}
	var afterArg any
	if after != uuid.Nil {
		afterArg = after
	}
	var rows []struct {
		TenantID      uuid.UUID
		TenantSlug    string
		Plan          string
		Meter         *string
		MeterCurrency *string
		Used          *int64
	}
	err = tx.Raw("SELECT tenant_id, tenant_slug, plan, meter, meter_currency, used FROM billing_usage_page(?, ?, ?)",
		period, afterArg, limit+1).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("usage of all tenants in %s: %w", period, err)
	}
	var out []UsageReport
	var used map[MeterKey]int64
	flush := func() {
		if len(out) > 0 {
			last := &out[len(out)-1]
			last.Meters = meterUsages(byPlan[last.Plan], used, end)
		}
	}
	for _, row := range rows {
		if len(out) == 0 || out[len(out)-1].TenantID != row.TenantID {
			flush()
			out = append(out, UsageReport{TenantID: row.TenantID, TenantSlug: row.TenantSlug, Plan: row.Plan, Period: period})
			used = map[MeterKey]int64{}
		}
		if row.Meter != nil && row.Used != nil {
			cur := ""
			if row.MeterCurrency != nil {
				cur = *row.MeterCurrency
			}
			used[MeterKey{*row.Meter, cur}] = *row.Used
		}
	}
	flush()
	return out, nil
}
