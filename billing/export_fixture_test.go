package billing_test

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// exportDB is a database of its own, migrated like the package's, for tests
// that export every tenant of a period: in the shared database the tenants
// of other tests would show up in their files.
type exportDB struct {
	app   *db.DB // tenantd_app, as the service runs
	owner *db.DB // tenantd_owner, for fixtures (row-level security applies)
	// super is the superuser on this database: it bypasses row-level
	// security, for bulk fixtures only.
	super *db.DB
}

func newExportDB(t *testing.T) exportDB {
	t.Helper()
	env := testenv.Get(t)
	ctx := t.Context()
	dbase := env.NewDatabase(t)
	superURL, err := url.Parse(env.AdminURL)
	if err != nil {
		t.Fatalf("parse admin url: %v", err)
	}
	superURL.Path = "/" + dbase.Name
	open := func(u, workerURL string) *db.DB {
		d, err := db.Open(ctx, u, db.Options{MaxConns: 4, WorkerURL: workerURL})
		if err != nil {
			t.Fatalf("open %s: %v", dbase.Name, err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	return exportDB{app: open(dbase.AppURL, dbase.WorkerURL), owner: open(dbase.OwnerURL, ""), super: open(superURL.String(), "")}
}

// tenant inserts a tenant through the platform scope, created at createdAt.
func (x exportDB) tenant(t *testing.T, id, slug, plan, status, createdAt string) uuid.UUID {
	t.Helper()
	at, err := time.Parse(time.RFC3339, createdAt)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.NewTenant(t, testenv.InDB(x.owner), testenv.WithID(uuid.MustParse(id)), testenv.WithSlug(slug),
		testenv.WithPlan(plan), testenv.WithStatus(status), testenv.WithCreatedAt(at)).ID
}

// platformExec runs one statement on the tenants table as the operator would.
func (x exportDB) platformExec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if err := x.owner.WithPlatform(t.Context(), func(tx *gorm.DB) error { return tx.Exec(sql, args...).Error }); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// count writes one usage_counters row as the flusher would: in the
// tenant's transaction, for the UTC hour, attributed to billingPeriod.
func (x exportDB) count(t *testing.T, tenantID uuid.UUID, meter, currency, hour, billingPeriod string, n int64) {
	t.Helper()
	insertCount(t, x.owner, tenantID, meter, currency, hour, billingPeriod, n)
}

func insertCount(t *testing.T, owner *db.DB, tenantID uuid.UUID, meter, currency, hour, billingPeriod string, n int64) {
	t.Helper()
	testenv.Exec(t, owner, tenantID, `INSERT INTO usage_counters (tenant_id, meter, currency, hour, billing_period, quantity)
			VALUES (?, ?, ?, ?::timestamptz, ?, ?)`, tenantID, meter, currency, hour, billingPeriod, n)
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gl), len(wl)) {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s differs from the golden file at line %d:\ngot  %q\nwant %q\n(run with -update if the change is intended)", name, i+1, g, w)
		}
	}
	t.Fatalf("%s differs from the golden file", name)
}

// Fixed tenants of the golden data set. Slugs "ab-c" and "abb" sort
// differently bytewise ("ab-c" first) than in most linguistic collations.
const (
	idAcme      = "0190a000-0000-7000-8000-000000000001"
	idBeta      = "0190a000-0000-7000-8000-000000000002"
	idZeta      = "0190a000-0000-7000-8000-000000000003"
	idAbb       = "0190a000-0000-7000-8000-000000000004"
	idAbC       = "0190a000-0000-7000-8000-000000000005"
	idSuspended = "0190a000-0000-7000-8000-000000000006"
	idLate      = "0190a000-0000-7000-8000-000000000007"
	idFuture    = "0190a000-0000-7000-8000-000000000008"
)

// newGoldenDB is newExportDB with the golden data set written (seedGolden).
func newGoldenDB(t *testing.T) exportDB {
	t.Helper()
	x := newExportDB(t)
	seedGolden(t, x)
	return x
}

// seedGolden writes the golden data set: usage in September 2026 and
// October 2026 (both ended), nothing closed yet.
func seedGolden(t *testing.T, x exportDB) {
	t.Helper()
	acme := x.tenant(t, idAcme, "acme", "pro", "active", "2026-08-01T00:00:00Z")
	beta := x.tenant(t, idBeta, "beta-shop", "free", "active", "2026-08-15T09:30:00Z")
	zeta := x.tenant(t, idZeta, "zeta", "enterprise", "active", "2026-09-10T00:00:00Z")
	abb := x.tenant(t, idAbb, "abb", "pro", "active", "2026-09-20T00:00:00Z")
	x.tenant(t, idAbC, "ab-c", "pro", "active", "2026-09-30T23:59:59Z")
	x.tenant(t, idSuspended, "suspended-co", "pro", "suspended", "2026-07-01T00:00:00Z")
	late := x.tenant(t, idLate, "late-comer", "pro", "active", "2026-10-20T00:00:00Z")
	// Created after both periods: in neither export.
	x.tenant(t, idFuture, "future", "pro", "active", "2026-11-02T00:00:00Z")

	// acme, pro (soft limits), September:
	// api_requests 3,000,000 + 2,500,000 + 1 = 5,500,001: 500,001 over the
	// 5,000,000 included, 501 started thousands at 10 = 5010.
	x.count(t, acme, "api_requests", "", "2026-09-01T10:00:00Z", "2026-09", 3_000_000)
	x.count(t, acme, "api_requests", "", "2026-09-15T12:00:00Z", "2026-09", 2_500_000)
	x.count(t, acme, "api_requests", "", "2026-09-30T23:00:00Z", "2026-09", 1)
	// orders 10,050: 50 over, 2 each = 100.
	x.count(t, acme, "orders_created", "", "2026-09-03T08:00:00Z", "2026-09", 10_050)
	// payment volume EUR 150,000,000: 50,000,000 over, 5000 started 10,000s
	// at 5 = 25000; USD 20,000: within the included volume.
	x.count(t, acme, "payment_volume", "EUR", "2026-09-03T08:00:00Z", "2026-09", 150_000_000)
	x.count(t, acme, "payment_volume", "USD", "2026-09-04T08:00:00Z", "2026-09", 20_000)
	// active_products, a gauge: the highest hour, 10,500; 500 over at 1.
	x.count(t, acme, "active_products", "", "2026-09-01T00:00:00Z", "2026-09", 9_000)
	x.count(t, acme, "active_products", "", "2026-09-12T00:00:00Z", "2026-09", 10_500)
	x.count(t, acme, "active_products", "", "2026-09-29T00:00:00Z", "2026-09", 10_200)
	// October's first hour belongs to October.
	x.count(t, acme, "api_requests", "", "2026-10-01T00:00:00Z", "2026-10", 1_000)

	// beta-shop, free (hard limits): over the hard limit (a race at the
	// limit) is never billed.
	x.count(t, beta, "api_requests", "", "2026-09-05T10:00:00Z", "2026-09", 120_000)
	x.count(t, beta, "orders_created", "", "2026-09-05T10:00:00Z", "2026-09", 5)
	x.count(t, beta, "orders_created", "", "2026-10-05T10:00:00Z", "2026-10", 7)

	// zeta, enterprise.
	x.count(t, zeta, "active_products", "", "2026-09-11T00:00:00Z", "2026-09", 3)
	x.count(t, zeta, "payment_volume", "EUR", "2026-09-11T00:00:00Z", "2026-09", 999)
	x.count(t, zeta, "payment_volume", "EUR", "2026-10-11T00:00:00Z", "2026-10", 10_000_001_000)

	// abb, pro: orders exactly at the included quantity: nothing billable.
	x.count(t, abb, "orders_created", "", "2026-09-21T00:00:00Z", "2026-09", 10_000)

	// late-comer, created in October.
	x.count(t, late, "orders_created", "", "2026-10-21T00:00:00Z", "2026-10", 3)
}

// addLateCounts writes, after September was closed, what the flusher would:
// counts of September hours attributed to October (adjustments), plus a row
// a faulty writer puts straight into closed September. It also renames a
// tenant and changes another's plan; none of it may change September's
// export.
func addLateCounts(t *testing.T, x exportDB) {
	t.Helper()
	acme, beta, zeta := uuid.MustParse(idAcme), uuid.MustParse(idBeta), uuid.MustParse(idZeta)
	// 700 more requests: 500,701 over, still 501 started thousands: the
	// adjustment bills 700 more units and 0 more money.
	x.count(t, acme, "api_requests", "", "2026-09-20T08:00:00Z", "2026-10", 700)
	// The gauge's late hour is higher than September's peak (10,500):
	// 500 more units, 500 more money. A lower late hour would add nothing.
	x.count(t, acme, "active_products", "", "2026-09-25T00:00:00Z", "2026-10", 11_000)
	x.count(t, acme, "active_products", "", "2026-09-26T00:00:00Z", "2026-10", 10_900)
	// Free plan, hard limit: counted, never billed.
	x.count(t, beta, "orders_created", "", "2026-09-30T22:00:00Z", "2026-10", 2)
	// A currency zeta had not used in September: no September line for it.
	x.count(t, zeta, "payment_volume", "GBP", "2026-09-30T12:00:00Z", "2026-10", 5_000)
	// Ignoring the close: lands in September itself, which is frozen.
	x.count(t, acme, "orders_created", "", "2026-09-30T21:00:00Z", "2026-09", 1_000_000)

	// acme moves to enterprise, beta-shop is renamed: October uses the new
	// plan and slug; September's adjustments use September's terms.
	x.platformExec(t, "UPDATE tenants SET plan = 'enterprise' WHERE id = ?", acme)
	x.platformExec(t, "UPDATE tenants SET slug = 'beta-store' WHERE id = ?", beta)
}
