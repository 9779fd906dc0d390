package billing_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// usageFixture is the package's shared database: the usage reports read
// one tenant at a time, so other tests' tenants do not matter.
type usageFixture struct {
	app   *db.DB
	owner *db.DB
}

func newUsageFixture(t *testing.T) usageFixture {
	t.Helper()
	env := testenv.Get(t)
	return usageFixture{app: env.OpenDB(t, 4), owner: env.OpenOwnerDB(t)}
}

func findMeter(ms []billing.MeterUsage, meter, currency string) (billing.MeterUsage, bool) {
	for _, m := range ms {
		if m.Meter == meter && m.Currency == currency {
			return m, true
		}
	}
	return billing.MeterUsage{}, false
}

// TestTenantUsage checks the numbers of GET /v1/usage: used (summed, or the
// highest hour of a gauge, adjustments from a closed month included),
// included, remaining, overage and its amount, under soft and hard limits.
func TestTenantUsage(t *testing.T) {
	t.Parallel()
	f := newUsageFixture(t)
	r := billing.NewReporter(f.app)
	pro, free, other := testenv.NewTenant(t, testenv.WithPlan("pro")).ID, testenv.NewTenant(t, testenv.WithPlan("free")).ID, testenv.NewTenant(t, testenv.WithPlan("pro")).ID

	insertCount(t, f.owner, pro, "api_requests", "", "2026-09-02T10:00:00Z", "2026-09", 5_000_000)
	insertCount(t, f.owner, pro, "api_requests", "", "2026-09-03T10:00:00Z", "2026-09", 500)
	insertCount(t, f.owner, pro, "payment_volume", "USD", "2026-09-03T10:00:00Z", "2026-09", 2_000)
	insertCount(t, f.owner, pro, "payment_volume", "EUR", "2026-09-03T10:00:00Z", "2026-09", 1_000)
	insertCount(t, f.owner, pro, "active_products", "", "2026-09-03T10:00:00Z", "2026-09", 10)
	insertCount(t, f.owner, pro, "active_products", "", "2026-09-04T10:00:00Z", "2026-09", 30)
	insertCount(t, f.owner, pro, "active_products", "", "2026-09-05T10:00:00Z", "2026-09", 20)
	// A late count of August, attributed to September.
	insertCount(t, f.owner, pro, "orders_created", "", "2026-08-31T23:00:00Z", "2026-09", 5)
	// Another period and another tenant: not counted.
	insertCount(t, f.owner, pro, "orders_created", "", "2026-10-01T00:00:00Z", "2026-10", 1_000)
	insertCount(t, f.owner, other, "orders_created", "", "2026-09-10T00:00:00Z", "2026-09", 777)
	insertCount(t, f.owner, free, "api_requests", "", "2026-09-10T00:00:00Z", "2026-09", 150_000)

	resets := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		tenant   uuid.UUID
		meter    string
		currency string
		want     billing.MeterUsage
	}{
		{"soft limit exceeded", pro, "api_requests", "", billing.MeterUsage{Meter: "api_requests", Used: 5_000_500,
			Included: 5_000_000, Remaining: 0, Overage: 500, OverageAmount: 10, PriceCurrency: "EUR", ResetsAt: resets}},
		{"late count of a closed month", pro, "orders_created", "", billing.MeterUsage{Meter: "orders_created", Used: 5,
			Included: 10_000, Remaining: 9_995, PriceCurrency: "EUR", ResetsAt: resets}},
		{"money meter, one entry per currency", pro, "payment_volume", "EUR", billing.MeterUsage{Meter: "payment_volume",
			Currency: "EUR", Used: 1_000, Included: 100_000_000, Remaining: 99_999_000, PriceCurrency: "EUR", ResetsAt: resets}},
		{"money meter, second currency", pro, "payment_volume", "USD", billing.MeterUsage{Meter: "payment_volume",
			Currency: "USD", Used: 2_000, Included: 100_000_000, Remaining: 99_998_000, PriceCurrency: "EUR", ResetsAt: resets}},
		{"gauge: the highest hour", pro, "active_products", "", billing.MeterUsage{Meter: "active_products", Used: 30,
			Included: 10_000, Remaining: 9_970, PriceCurrency: "EUR", ResetsAt: resets}},
		{"hard limit: no overage", free, "api_requests", "", billing.MeterUsage{Meter: "api_requests", Used: 150_000,
			Included: 100_000, Remaining: 0, PriceCurrency: "EUR", HardLimit: true, ResetsAt: resets}},
		{"unused meter", free, "orders_created", "", billing.MeterUsage{Meter: "orders_created",
			Included: 100, Remaining: 100, PriceCurrency: "EUR", HardLimit: true, ResetsAt: resets}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := r.TenantUsage(t.Context(), tt.tenant, "2026-09")
			if err != nil {
				t.Fatal(err)
			}
			got, ok := findMeter(rep.Meters, tt.meter, tt.currency)
			if !ok {
				t.Fatalf("got meters %+v, want %s %q", rep.Meters, tt.meter, tt.currency)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}

	t.Run("shape", func(t *testing.T) {
		rep, err := r.TenantUsage(t.Context(), pro, "2026-09")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Plan != "pro" || rep.Period != "2026-09" {
			t.Errorf("got plan %s period %s, want pro 2026-09", rep.Plan, rep.Period)
		}
		var got []string
		for _, m := range rep.Meters {
			got = append(got, m.Meter+"/"+m.Currency)
		}
		want := []string{"active_products/", "api_requests/", "orders_created/", "payment_volume/EUR", "payment_volume/USD"}
		if len(got) != len(want) {
			t.Fatalf("got meters %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("got meters %v, want %v", got, want)
			}
		}
	})
	t.Run("empty period", func(t *testing.T) {
		rep, err := r.TenantUsage(t.Context(), pro, "2025-01")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range rep.Meters {
			if m.Used != 0 || m.Remaining != m.Included {
				t.Errorf("got %+v, want nothing used", m)
			}
		}
		if len(rep.Meters) != 4 {
			t.Errorf("got %d meters, want the plan's 4", len(rep.Meters))
		}
	})
	t.Run("bad period", func(t *testing.T) {
		if _, err := r.TenantUsage(t.Context(), pro, "2026-9"); !errors.Is(err, billing.ErrBadPeriod) {
			t.Errorf("got error %v, want ErrBadPeriod", err)
		}
	})
}

// newAdminBase returns an id whose last byte is zero, drawn afresh for
// each test and each run (-count): the admin report's tenants are
// adminTenantID(base, i), just above it, so a page from base starts with
// them whatever other tests created.
func newAdminBase() uuid.UUID {
	id := uuid.New()
	id[15] = 0
	return id
}

func adminTenantID(base uuid.UUID, i int) uuid.UUID {
	id := base
	id[15] = byte(i)
	return id
}

// TestAllUsage checks the operator's report across tenants: pages by id,
// every tenant once with every meter of its plan, and the same numbers as
// the tenant's own report.
func TestAllUsage(t *testing.T) {
	t.Parallel()
	f := newUsageFixture(t)
	r := billing.NewReporter(f.app)
	base := newAdminBase()
	a := testenv.NewTenant(t, testenv.WithID(adminTenantID(base, 1)), testenv.WithPlan("pro")).ID
	b := testenv.NewTenant(t, testenv.WithID(adminTenantID(base, 2)), testenv.WithPlan("free")).ID
	c := testenv.NewTenant(t, testenv.WithID(adminTenantID(base, 3)), testenv.WithPlan("enterprise")).ID
	insertCount(t, f.owner, a, "api_requests", "", "2026-07-02T10:00:00Z", "2026-07", 5_001_000)
	insertCount(t, f.owner, a, "payment_volume", "EUR", "2026-07-02T10:00:00Z", "2026-07", 10)
	insertCount(t, f.owner, a, "payment_volume", "SEK", "2026-07-02T10:00:00Z", "2026-07", 20)
	insertCount(t, f.owner, c, "active_products", "", "2026-07-02T10:00:00Z", "2026-07", 7)
	insertCount(t, f.owner, c, "active_products", "", "2026-07-02T11:00:00Z", "2026-07", 4)

	page1, err := r.AllUsage(t.Context(), "2026-07", base, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page1) != 3 || page1[0].TenantID != a || page1[1].TenantID != b || page1[2].TenantID != c {
		t.Fatalf("got first page %v, want tenants a, b and c (the extra one saying there is more)", ids(page1))
	}
	page2, err := r.AllUsage(t.Context(), "2026-07", b, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page2) == 0 || page2[0].TenantID != c {
		t.Fatalf("got second page %v, want it to start with c", ids(page2))
	}
	if len(page1[1].Meters) != 4 {
		t.Errorf("tenant without usage: got %d meters, want 4", len(page1[1].Meters))
	}
	for _, rep := range []billing.UsageReport{page1[0], page1[1], page2[0]} {
		own, err := r.TenantUsage(t.Context(), rep.TenantID, "2026-07")
		if err != nil {
			t.Fatal(err)
		}
		if len(own.Meters) != len(rep.Meters) {
			t.Fatalf("tenant %s: got %d meters in the admin report, %d in its own", rep.TenantID, len(rep.Meters), len(own.Meters))
		}
		for i := range own.Meters {
			if own.Meters[i] != rep.Meters[i] {
				t.Errorf("tenant %s: got %+v in the admin report, want %+v as in its own", rep.TenantID, rep.Meters[i], own.Meters[i])
			}
		}
	}
	if m, _ := findMeter(page1[0].Meters, "api_requests", ""); m.Overage != 1_000 || m.OverageAmount != 10 {
		t.Errorf("got %+v, want overage 1000 costing 10", m)
	}
	if m, _ := findMeter(page2[0].Meters, "active_products", ""); m.Used != 7 {
		t.Errorf("gauge: got used %d, want 7", m.Used)
	}
	if _, err := r.AllUsage(t.Context(), "July", uuid.Nil, 10); !errors.Is(err, billing.ErrBadPeriod) {
		t.Errorf("got error %v, want ErrBadPeriod", err)
	}
}

func ids(reps []billing.UsageReport) []uuid.UUID {
	out := make([]uuid.UUID, len(reps))
	for i, r := range reps {
		out[i] = r.TenantID
	}
	return out
}
