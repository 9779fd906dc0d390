package audit_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
)

// openSuperuser opens a superuser pool on the package's database: it
// ignores row-level security and grants, as an attacker with the server's
// keys would.
func openSuperuser(t testing.TB, env *testenv.Env) *db.DB {
	t.Helper()
	u, err := url.Parse(env.AdminURL)
	if err != nil {
		t.Fatalf("parse admin url: %v", err)
	}
	u.Path = "/" + env.DBName
	d, err := db.Open(t.Context(), u.String(), db.Options{MaxConns: 2})
	if err != nil {
		t.Fatalf("open superuser database: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// tamper runs stmt as the superuser with triggers off (as an attacker with
// the server's keys could), and returns the rows it touched.
func tamper(t testing.TB, su *db.DB, stmt string, args ...any) int64 {
	t.Helper()
	var n int64
	err := su.Unscoped(t.Context()).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SET LOCAL session_replication_role = replica").Error; err != nil {
			return err
		}
		res := tx.Exec(stmt, args...)
		n = res.RowsAffected
		return res.Error
	})
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
	return n
}

// actingCtx is a request context: a principal of tenantID, a request id and
// an origin.
func actingCtx(ctx context.Context, tenantID uuid.UUID, subject string) context.Context {
	ctx = identity.WithPrincipal(ctx, identity.Principal{Kind: identity.KindAPIKey, TenantID: tenantID, Subject: subject})
	ctx = identity.WithRequestID(ctx, "req-"+subject)
	return audit.WithOrigin(ctx, audit.Origin{IP: "203.0.113.7", UserAgent: "test-agent/1.0"})
}

// record appends e for tenantID in a transaction of its own.
func record(t testing.TB, d *db.DB, ctx context.Context, tenantID uuid.UUID, e audit.Entry) {
	t.Helper()
	err := d.WithTenant(ctx, tenantID, func(tx *gorm.DB) error { return audit.Record(ctx, tx, tenantID, e) })
	if err != nil {
		t.Fatalf("record %s: %v", e.Action, err)
	}
}

// events returns the tenant's events in position order, as the runtime role
// reads them through List, page by page, once the sealer has sealed every
// committed one.
func events(t testing.TB, d *db.DB, tenantID uuid.UUID) []audit.Event {
	t.Helper()
	waitSealed(t, d, tenantID)
	return listAll(t, d, tenantID)
}

// listAll returns the tenant's events in position order, sealed or not.
func listAll(t testing.TB, d *db.DB, tenantID uuid.UUID) []audit.Event {
	t.Helper()
	a := audit.New(d, testenv.Logger(), audit.Options{})
	var out []audit.Event
	for before := int64(0); ; {
		page, err := a.List(t.Context(), tenantID, audit.Filter{Limit: 200, BeforePosition: before})
		if err != nil {
			t.Fatalf("list events: %v", err)
		}
		out = append(out, page[:min(len(page), 200)]...)
		if len(page) <= 200 {
			break
		}
		before = page[199].Position
	}
	slices.Reverse(out)
	return out
}

// sealInterval is the test sealers' poll: short, so tests wait little.
const sealInterval = 10 * time.Millisecond

var (
	sealerOnce sync.Once
	sealerErr  error
)

// startSealer runs the package's sealer, once, on a pool of its own that
// outlives the test (as another replica would), until the package's tests
// end. Tests that start their own sealers compete with it for the lease.
// Its pool has a lock timeout, as the server's has: a row lock held too
// long fails that tenant's sealing instead of stalling the sealer.
func startSealer(t testing.TB) {
	t.Helper()
	sealerOnce.Do(func() {
		env := testenv.Get(t)
		d, err := db.Open(context.Background(), env.AppURL, db.Options{MaxConns: 6, LockTimeout: 200 * time.Millisecond, WorkerURL: env.WorkerURL})
		if err != nil {
			sealerErr = err
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			audit.New(d, testenv.Logger(), audit.Options{SealInterval: sealInterval}).RunSealer(ctx)
		}()
		testenv.AfterTests(func() error {
			cancel()
			<-done
			return d.Close()
		})
	})
	if sealerErr != nil {
		t.Fatalf("start the sealer: %v", sealerErr)
	}
}

// waitSealed waits, a bounded time, until the tenant has no unsealed row.
func waitSealed(t testing.TB, d *db.DB, tenantID uuid.UUID) {
	t.Helper()
	startSealer(t)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { return unsealed(t, d, tenantID) == 0, "every audit row sealed" })
}

// unsealed counts the tenant's unsealed rows.
func unsealed(t testing.TB, d *db.DB, tenantID uuid.UUID) int64 {
	t.Helper()
	return testenv.Query[int64](t, d, tenantID, "SELECT count(*) FROM audit_events WHERE hash IS NULL")
}

// sqlState returns the SQLSTATE of a PostgreSQL error, or "".
func sqlState(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code
	}
	return ""
}
