//go:build citus

package citus_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/internal/testenv"
)

// benchDB is one database of a comparison: a tenant with one product, the
// app's pool and a direct connection, both as the runtime role.
type benchDB struct {
	app     *db.DB
	conn    *pgx.Conn
	tenant  uuid.UUID
	product uuid.UUID
}

// newBenchDB writes a tenant and a product into dbase and opens its pools.
func newBenchDB(b *testing.B, dbase devenv.Database) benchDB {
	b.Helper()
	ctx := context.Background()
	owner, err := db.Open(ctx, dbase.OwnerURL, db.Options{MaxConns: 2})
	if err != nil {
		b.Fatalf("open owner pool: %v", err)
	}
	b.Cleanup(func() { owner.Close() })
	app, err := db.Open(ctx, dbase.AppURL, db.Options{MaxConns: 2})
	if err != nil {
		b.Fatalf("open app pool: %v", err)
	}
	b.Cleanup(func() { app.Close() })
	tn := testenv.NewTenant(b, testenv.InDB(owner), testenv.WithPlan("enterprise"))
	product := uuid.Must(uuid.NewV7())
	err = app.WithTenant(ctx, tn.ID, func(tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
			VALUES (?, ?, 'B-1', 'Bench', 100, 'EUR', 10)`, tn.ID, product).Error
	})
	if err != nil {
		b.Fatalf("insert product: %v", err)
	}
	return benchDB{app: app, conn: connect(b, dbase.AppURL), tenant: tn.ID, product: product}
}

// benchPair is the package's Citus database and a plain PostgreSQL one,
// with the same migrations and rows.
func benchPair(b *testing.B) (plain, citus benchDB) {
	b.Helper()
	env := testenv.Get(b)
	if !env.Citus {
		b.Fatal("the package's database is not on Citus")
	}
	citus = newBenchDB(b, devenv.Database{Name: env.DBName, OwnerURL: env.OwnerURL, AppURL: env.AppURL, WorkerURL: env.WorkerURL})
	plain = newBenchDB(b, env.PlainDatabase(b))
	return plain, citus
}

// interleaved runs x and y once per iteration, alternately first, and
// reports each one's mean in µs and y's mean over x's.
func interleaved(b *testing.B, xName string, x func() error, yName string, y func() error) {
	b.Helper()
	var tx, ty time.Duration
	timed := func(f func() error) time.Duration {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for range 20 { // warm the pools, caches and Citus's worker connections
		timed(x)
		timed(y)
	}
	n := 0.0
	for b.Loop() {
		if int(n)%2 == 0 {
			tx += timed(x)
			ty += timed(y)
		} else {
			ty += timed(y)
			tx += timed(x)
		}
		n++
	}
	b.ReportMetric(float64(tx.Microseconds())/n, "µs/"+xName)
	b.ReportMetric(float64(ty.Microseconds())/n, "µs/"+yName)
	b.ReportMetric(float64(ty)/float64(tx), yName+"/"+xName)
}

// readTx is the transaction the binding benchmark times: BEGIN (with the
// binding tenantd sends in the same message, when bind), a router read of
// one product by tenant and id, COMMIT.
func (d benchDB) readTx(bind bool) func() error {
	begin := "BEGIN"
	if bind {
		begin = "BEGIN; SELECT app_bind_tenant('" + d.tenant.String() + "')"
	}
	return func() error {
		ctx := context.Background()
		if _, err := d.conn.Exec(ctx, begin); err != nil {
			return err
		}
		var n int
		if err := d.conn.QueryRow(ctx, "SELECT count(*) FROM products WHERE tenant_id = $1 AND id = $2", d.tenant, d.product).Scan(&n); err != nil {
			return err
		}
		if bind && n != 1 {
			return errBench("bound read saw no product")
		}
		_, err := d.conn.Exec(ctx, "COMMIT")
		return err
	}
}

type errBench string

func (e errBench) Error() string { return string(e) }

// BenchmarkTenantBinding: the cost of the tenant binding per transaction,
// app_bind_tenant in the BEGIN message against no binding at all, on plain
// PostgreSQL and on Citus (where the binding's SET LOCAL travels in each
// worker connection's BEGIN).
func BenchmarkTenantBinding(b *testing.B) {
	plain, citus := benchPair(b)
	b.Run("postgres", func(b *testing.B) {
		interleaved(b, "unbound", plain.readTx(false), "bound", plain.readTx(true))
	})
	b.Run("citus", func(b *testing.B) {
		interleaved(b, "unbound", citus.readTx(false), "bound", citus.readTx(true))
	})
}

// productRead is a product read the way the API serves one: db.WithTenant
// and a router query by tenant and id.
func (d benchDB) productRead() func() error {
	return func() error {
		var name string
		return d.app.WithTenant(context.Background(), d.tenant, func(tx *gorm.DB) error {
			return tx.Raw("SELECT name FROM products WHERE tenant_id = ? AND id = ?", d.tenant, d.product).Row().Scan(&name)
		})
	}
}

// BenchmarkRouterRead: the latency of a product read routed to one shard
// on Citus against the same read on plain PostgreSQL, interleaved in one
// run.
func BenchmarkRouterRead(b *testing.B) {
	plain, citus := benchPair(b)
	interleaved(b, "postgres", plain.productRead(), "citus", citus.productRead())
}
