package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/app"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/inventory"
	"github.com/tenantd/tenantd/migrations"
	"github.com/tenantd/tenantd/tenant"
)

// database is the throw-away cluster and the migrated database the service
// and pgbench share.
type database struct {
	env *devenv.Env
	devenv.Database
}

// startDatabase starts throw-away PostgreSQL and Redis, provisions and
// migrates a database, and gives the runtime role its password. stop
// removes everything it started.
func startDatabase(ctx context.Context, log *slog.Logger) (d *database, err error) {
	env, err := devenv.Start(ctx, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			env.Stop()
		}
	}()
	dbase, err := devenv.Provision(ctx, env.AdminURL, "tenantd_bench")
	if err != nil {
		return nil, err
	}
	m, err := db.NewMigrator(dbase.OwnerURL, migrations.Files)
	if err != nil {
		return nil, err
	}
	err = m.Up()
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := devenv.SetAppPassword(ctx, env.AdminURL); err != nil {
		return nil, err
	}
	return &database{env: env, Database: dbase}, nil
}

func (d *database) stop() { d.env.Stop() }

// server is tenantd wired by internal/app, as `tenantd serve` wires it,
// serving on a loopback port of this process.
type server struct {
	app  *app.App
	base string // http://127.0.0.1:port

	db    *db.DB
	redis *redis.Client
	http  *http.Server
	done  chan error
	stopB context.CancelFunc
	bg    sync.WaitGroup
}

// startServer configures tenantd from the environment as `tenantd serve`
// does (so DB_MAX_CONNS, API_KEY_CACHE_TTL and the like can be tuned), with
// the throw-away servers' URLs, and serves it on 127.0.0.1. Without
// background, the app's background work (event dispatcher, audit sealer,
// sweepers, listeners) does not run, to measure what it costs.
func startServer(ctx context.Context, d *database, logLevel string, background bool, log *slog.Logger) (_ *server, err error) {
	overrides := map[string]string{
		"DATABASE_URL":         d.AppURL,
		"MIGRATE_DATABASE_URL": d.OwnerURL,
		"WORKER_DATABASE_URL":  d.WorkerURL,
		"REDIS_URL":            d.env.RedisURL,
		"HTTP_ADDR":            "127.0.0.1:0",
		"LOG_LEVEL":            logLevel,
		"PLATFORM_API_KEY":     "",
		"BASE_DOMAIN":          "",
	}
	cfg, err := config.Load(func(k string) string {
		if v, ok := overrides[k]; ok {
			return v
		}
		return os.Getenv(k)
	})
	if err != nil {
		return nil, err
	}
	// The pool as `tenantd serve` opens it, timeouts included; tracing
	// stays off (OTEL_* unset), as no collector listens.
	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: cfg.DBMaxConns,
		LockTimeout: cfg.DBLockTimeout, StatementTimeout: cfg.DBStatementTimeout, IdleInTxTimeout: cfg.DBIdleInTxTimeout, WorkerURL: cfg.WorkerDatabaseURL})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			pool.Close()
		}
	}()
	if err := pool.CheckRuntimeRole(ctx); err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	a, err := app.New(cfg, pool, rdb, log)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	s := &server{app: a, base: "http://" + ln.Addr().String(), db: pool, redis: rdb, done: make(chan error, 1)}
	// The timeouts of main.go's listenAndServe.
	s.http = &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	bgCtx, stopB := context.WithCancel(context.WithoutCancel(ctx))
	s.stopB = stopB
	if background {
		// Labelled, so that a CPU profile tells the background work from
		// the requests' (goroutines it starts inherit the label).
		s.bg.Go(func() { pprof.Do(bgCtx, pprof.Labels("side", "background"), a.Run) })
	}
	go func() { s.done <- s.http.Serve(ln) }()
	return s, nil
}

// stop shuts the HTTP server down, ends the background work (event
// dispatcher, sweepers) and closes the connections, so nothing of the
// service runs while pgbench measures.
func (s *server) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	s.stopB()
	s.bg.Wait()
	return errors.Join(err, s.redis.Close(), s.db.Close())
}

// population is the tenants the load runs over: each with its admin API key
// and its products.
type population struct {
	tenants []benchTenant
}

type benchTenant struct {
	tenant.Tenant
	key      string
	products []inventory.Product
}

// stockPerProduct is far more than any run can reserve, so no placement
// fails for want of stock.
const stockPerProduct = 1_000_000_000

// populate creates n tenants on the enterprise plan, each with its admin key
// and products products, through the services (as `tenantd dev` seeds its
// demo tenant).
func populate(ctx context.Context, a *app.App, n, products int) (*population, error) {
	p := &population{tenants: make([]benchTenant, n)}
	for i := range p.tenants {
		t, key, err := a.Tenants.Create(ctx, tenant.NewTenant{
			Slug: fmt.Sprintf("bench-%04d", i), Name: fmt.Sprintf("Bench tenant %d", i), Plan: "enterprise"})
		if err != nil {
			return nil, err
		}
		bt := benchTenant{Tenant: t, key: key, products: make([]inventory.Product, products)}
		for j := range bt.products {
			prod, err := a.Inventory.Create(ctx, t.ID, inventory.NewProduct{
				SKU: fmt.Sprintf("SKU-%03d", j), Name: fmt.Sprintf("Product %d", j),
				Price: int64(100 + 10*j), Currency: "EUR", Stock: stockPerProduct})
			if err != nil {
				return nil, err
			}
			bt.products[j] = prod
		}
		p.tenants[i] = bt
	}
	return p, nil
}

// pair returns the products of the order numbered round of a tenant: two
// neighbours in the catalogue, so that one-item and two-item orders spread
// evenly over the products.
func (t benchTenant) pair(round int64) (inventory.Product, inventory.Product) {
	j := int(round/2) % len(t.products)
	return t.products[j], t.products[(j+1)%len(t.products)]
}

// targetsDDL is the helper schema of the pgbench script, created by the
// owner role and readable by the runtime role: what the service knows
// before it reaches the database (the tenant, its products and their
// prices), and a generator of time-ordered ids like the service's
// uuid.NewV7, which PostgreSQL 15 lacks.
const targetsDDL = `
CREATE TABLE bench_targets (
    n        int PRIMARY KEY,
    tenant_id uuid NOT NULL,
    a_id     uuid NOT NULL,
    a_sku    text NOT NULL,
    a_price  bigint NOT NULL,
    b_id     uuid NOT NULL,
    b_sku    text NOT NULL,
    b_price  bigint NOT NULL,
    currency text NOT NULL
);
CREATE FUNCTION bench_uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS
$$ SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
           || '7' || substr(md5(random()::text), 1, 19))::uuid $$;
GRANT SELECT ON bench_targets TO tenantd_app;
GRANT EXECUTE ON FUNCTION bench_uuid7() TO tenantd_app;
`

// writeTargets fills bench_targets with one row per tenant and product
// pair, products sorted by id within a pair as Reserve sorts its lines, and
// returns the number of rows.
func writeTargets(ctx context.Context, ownerURL string, p *population) (int, error) {
	conn, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		return 0, fmt.Errorf("targets: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, targetsDDL); err != nil {
		return 0, fmt.Errorf("targets: create: %w", err)
	}
	var rows [][]any
	for _, t := range p.tenants {
		for j, a := range t.products {
			b := t.products[(j+1)%len(t.products)]
			if string(b.ID[:]) < string(a.ID[:]) {
				a, b = b, a
			}
			rows = append(rows, []any{len(rows) + 1, t.ID, a.ID, a.SKU, a.Price, b.ID, b.SKU, b.Price, a.Currency})
		}
	}
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"bench_targets"},
		[]string{"n", "tenant_id", "a_id", "a_sku", "a_price", "b_id", "b_sku", "b_price", "currency"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return 0, fmt.Errorf("targets: fill: %w", err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE bench_targets"); err != nil {
		return 0, fmt.Errorf("targets: analyze: %w", err)
	}
	return len(rows), nil
}
