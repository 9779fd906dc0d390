// Command tenantd is a multi-tenant SaaS API: products with stock, orders,
// payments, members, roles, API keys and single sign-on, with every tenant's
// data isolated by PostgreSQL row-level security.
//
// Usage:
//
//	tenantd serve                      serve the API (DATABASE_URL, REDIS_URL, …)
//	tenantd migrate up|down [N]|status apply or roll back migrations (MIGRATE_DATABASE_URL)
//	tenantd dev                        throw-away PostgreSQL and Redis, a demo tenant, serve
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/app"
	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/inventory"
	"github.com/tenantd/tenantd/migrations"
	"github.com/tenantd/tenantd/tenant"
)

const usage = `tenantd — multi-tenant SaaS API

Usage:
  tenantd serve                        serve the API
  tenantd migrate up | down [N] | status
                                       apply, roll back (all, or N steps) or show migrations
  tenantd billing export --period YYYY-MM [--format csv|jsonl] [--out FILE] [--provisional]
                                       the billing file of a month (closes an ended month)
  tenantd projections rebuild          recreate every tenant's order read model from its events
  tenantd audit verify [--tenant ID|SLUG] [--max-unsealed-age 10s]
                                       recompute the audit hash chain of every tenant (or one);
                                       prints each chain's head, exits 1 if one is broken or a
                                       row has waited longer than the maximum age to be sealed
  tenantd healthcheck                  exit 0 when the local server answers /healthz
  tenantd dev                          start throw-away PostgreSQL and Redis (unless
                                       DATABASE_URL / REDIS_URL are set), migrate, create
                                       the demo tenant "acme" and serve

Configuration comes from the environment:
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tenantd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		printUsage()
		return errors.New("a subcommand is required")
	}
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	slog.SetDefault(log)
	redis.SetLogger(redisLogger{log})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "serve":
		if err := cfg.RequireServices(); err != nil {
			return err
		}
		return serve(ctx, cfg, log)
	case "migrate":
		return migrate(cfg, args[1:], log)
	case "dev":
		return dev(ctx, cfg, log)
	case "healthcheck":
		return healthcheck(cfg)
	case "billing":
		return billingCommand(ctx, cfg, args[1:])
	case "projections":
		if len(args) < 2 || args[1] != "rebuild" {
			return errors.New("usage: tenantd projections rebuild")
		}
		if err := cfg.RequireServices(); err != nil {
			return err
		}
		return rebuildProjections(ctx, cfg, log)
	case "audit":
		if len(args) < 2 || args[1] != "verify" {
			return errors.New("usage: tenantd audit verify [--tenant ID|SLUG] [--max-unsealed-age 10s]")
		}
		if cfg.DatabaseURL == "" {
			return errors.New("invalid configuration: DATABASE_URL must be set")
		}
		return verifyAudit(ctx, cfg, args[2:])
	case "help", "-h", "--help":
		printUsage()
		return nil
	default:
		printUsage()
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
}

func printUsage() {
	fmt.Fprint(os.Stderr, usage)
	for _, v := range config.Vars {
		fmt.Fprintf(os.Stderr, "  %-22s %s (default: %s)\n", v.Name, v.Meaning, v.Default)
	}
}

// redisLogger sends go-redis's own messages (reconnects, pool errors) to
// slog, so every line follows LOG_FORMAT.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

func newLogger(cfg config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(obs.TraceHandler{Handler: slog.NewTextHandler(os.Stderr, opts)})
	}
	return slog.New(obs.TraceHandler{Handler: slog.NewJSONHandler(os.Stderr, opts)})
}

// setupTracing turns tracing on when an OTLP endpoint is configured, and
// returns the function that flushes it at exit.
func setupTracing(ctx context.Context, cfg config.Config, log *slog.Logger) func() {
	if !cfg.Tracing {
		return func() {}
	}
	shutdown, err := obs.SetupTracing(ctx)
	if err != nil {
		log.Error("tracing disabled: could not set up the OTLP exporter", "err", err)
		cfg.Tracing = false
		return func() {}
	}
	log.Info("tracing on: exporting spans over OTLP")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			log.Warn("tracing: flushing spans at exit failed", "err", err)
		}
	}
}

// serve runs the API until ctx ends, then drains: /readyz turns 503 and
// in-flight requests get up to SHUTDOWN_TIMEOUT to finish.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	defer setupTracing(ctx, cfg, log)()
	d, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: cfg.DBMaxConns, Tracing: cfg.Tracing,
		LockTimeout: cfg.DBLockTimeout, StatementTimeout: cfg.DBStatementTimeout, IdleInTxTimeout: cfg.DBIdleInTxTimeout, WorkerURL: cfg.WorkerDatabaseURL})
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.CheckRuntimeRole(ctx); err != nil {
		return err
	}
	rdb, err := openRedis(cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	a, err := app.New(cfg, d, rdb, log)
	if err != nil {
		return err
	}
	return listenAndServe(ctx, cfg, a, log)
}

func listenAndServe(ctx context.Context, cfg config.Config, a *app.App, log *slog.Logger) error {
	srv := &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	background := make(chan struct{})
	go func() { a.Run(bgCtx); close(background) }()

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("tenantd serving", "addr", cfg.HTTPAddr, "admin_routes", cfg.PlatformAPIKey != "")
	select {
	case err := <-errc:
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	case <-ctx.Done():
	}
	log.Info("shutting down: readiness now fails; draining", "drain_delay", cfg.DrainDelay, "timeout", cfg.ShutdownTimeout)
	a.SetDraining()
	// Keep serving while load balancers notice /readyz failing.
	time.Sleep(cfg.DrainDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	// Dispatchers and flushers stop at a safe point (between transactions);
	// then every usage count still in this process is written to
	// PostgreSQL. That needs no Redis: an unreachable Redis is no reason to
	// exit 1 (TestGracefulShutdown/redis_down); losing counts is.
	stopBackground()
	<-background
	if err := a.Usage.Flush(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: flush usage: %w", err)
	}
	log.Info("tenantd stopped")
	return nil
}

func openRedis(cfg config.Config) (*redis.Client, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opts.DialTimeout = 2 * time.Second
	opts.ReadTimeout = time.Second
	opts.WriteTimeout = time.Second
	rdb := redis.NewClient(opts)
	if cfg.Tracing {
		if err := redisotel.InstrumentTracing(rdb); err != nil {
			return nil, fmt.Errorf("redis tracing: %w", err)
		}
	}
	return rdb, nil
}

func migrate(cfg config.Config, args []string, log *slog.Logger) error {
	if cfg.MigrateDatabaseURL == "" {
		return errors.New("invalid configuration: MIGRATE_DATABASE_URL (or DATABASE_URL) must be set")
	}
	if len(args) == 0 {
		return errors.New("migrate needs up, down [N] or status")
	}
	m, err := db.NewMigrator(cfg.MigrateDatabaseURL, migrations.Files)
	if err != nil {
		return err
	}
	defer m.Close()
	switch args[0] {
	case "up":
		if err := m.Up(); err != nil {
			return err
		}
	case "down":
		steps := 0
		if len(args) > 1 {
			if steps, err = strconv.Atoi(args[1]); err != nil || steps < 1 {
				return fmt.Errorf("migrate down: N must be a positive integer, got %q", args[1])
			}
		}
		if err := m.Down(steps); err != nil {
			return err
		}
	case "status":
	default:
		return fmt.Errorf("migrate: unknown action %q (want up, down [N] or status)", args[0])
	}
	st, err := m.Status(migrations.Files)
	if err != nil {
		return err
	}
	log.Info("migrations", "current", st.Current, "latest", st.Latest, "dirty", st.Dirty)
	fmt.Printf("schema version %d of %d%s\n", st.Current, st.Latest, map[bool]string{true: " (dirty)"}[st.Dirty])
	return nil
}

// dev starts what is missing (PostgreSQL, Redis) from local binaries,
// migrates, seeds the demo tenant and serves until Ctrl-C, then removes
// everything it started.
func dev(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	var env *devenv.Env
	var err error
	switch {
	case cfg.DatabaseURL == "":
		if env, err = devenv.Start(ctx, log); err != nil {
			return err
		}
		defer env.Stop()
		dbase, err := devenv.Provision(ctx, env.AdminURL, "tenantd")
		if err != nil {
			return err
		}
		cfg.MigrateDatabaseURL, cfg.DatabaseURL, cfg.WorkerDatabaseURL = dbase.OwnerURL, dbase.AppURL, dbase.WorkerURL
		if cfg.RedisURL == "" {
			cfg.RedisURL = env.RedisURL
		}
	case cfg.RedisURL == "":
		if env, err = devenv.StartRedisOnly(ctx, log); err != nil {
			return err
		}
		defer env.Stop()
		cfg.RedisURL = env.RedisURL
	}
	if cfg.WorkerDatabaseURL == "" {
		return errors.New("invalid configuration: WORKER_DATABASE_URL must be set with DATABASE_URL")
	}
	m, err := db.NewMigrator(cfg.MigrateDatabaseURL, migrations.Files)
	if err != nil {
		return err
	}
	err = m.Up()
	m.Close()
	if err != nil {
		return err
	}
	if env != nil && env.AdminURL != "" {
		if err := devenv.SetAppPassword(ctx, env.AdminURL); err != nil {
			return err
		}
	}
	if cfg.PlatformAPIKey == "" {
		cfg.PlatformAPIKey = "pk_dev_" + randomHex(16)
	}
	// Local identity providers (a Keycloak or Dex on localhost) are allowed;
	// Ctrl-C stops at once.
	cfg.OIDCAllowInsecureIssuers = true
	cfg.DrainDelay = 0
	defer setupTracing(ctx, cfg, log)()
	d, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: cfg.DBMaxConns, Tracing: cfg.Tracing,
		LockTimeout: cfg.DBLockTimeout, StatementTimeout: cfg.DBStatementTimeout, IdleInTxTimeout: cfg.DBIdleInTxTimeout, WorkerURL: cfg.WorkerDatabaseURL})
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.CheckRuntimeRole(ctx); err != nil {
		return err
	}
	rdb, err := openRedis(cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	a, err := app.New(cfg, d, rdb, log)
	if err != nil {
		return err
	}
	adminKey, err := seedDemo(ctx, a)
	if err != nil {
		return err
	}
	printWelcome(cfg, adminKey)
	return listenAndServe(ctx, cfg, a, log)
}

// seedDemo creates the tenant "acme" with a few products and returns its
// admin key; an acme left from an earlier run (a database given by URL) is
// kept, and its key cannot be shown again.
func seedDemo(ctx context.Context, a *app.App) (string, error) {
	t, key, err := a.Tenants.Create(ctx, tenant.NewTenant{Slug: "acme", Name: "Acme Corporation", Plan: "pro"})
	if errors.Is(err, tenant.ErrSlugTaken) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("seed demo tenant: %w", err)
	}
	for _, p := range []inventory.NewProduct{
		{SKU: "ANVIL-1", Name: "Anvil", Price: 4999, Currency: "EUR", Stock: 25},
		{SKU: "ROCKET-SKATES", Name: "Rocket skates", Price: 12900, Currency: "EUR", Stock: 10},
		{SKU: "BIRDSEED-5KG", Name: "Bird seed, 5 kg", Price: 1299, Currency: "EUR", Stock: 200},
	} {
		if _, err := a.Inventory.Create(ctx, t.ID, p); err != nil {
			return "", fmt.Errorf("seed demo product %s: %w", p.SKU, err)
		}
	}
	return key, nil
}

func printWelcome(cfg config.Config, adminKey string) {
	base := "http://" + cfg.HTTPAddr
	if host, port, err := net.SplitHostPort(cfg.HTTPAddr); err == nil && (host == "" || host == "0.0.0.0") {
		base = "http://127.0.0.1:" + port
	}
	fmt.Printf("\ntenantd dev is starting on %s\n\n", base)
	fmt.Printf("  operator key (PLATFORM_API_KEY): %s\n", cfg.PlatformAPIKey)
	if adminKey == "" {
		fmt.Printf("  demo tenant acme exists already; its admin key was shown when it was created\n\n")
		return
	}
	fmt.Printf("  demo tenant acme, admin API key: %s\n\n", adminKey)
	fmt.Printf("Try:\n")
	fmt.Printf("  export KEY=%s\n", adminKey)
	fmt.Printf("  curl -s %s/v1/products -H \"Authorization: Bearer $KEY\"\n", base)
	fmt.Printf("  curl -s %s/v1/products -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \\\n    -d '{\"sku\":\"TNT-1\",\"name\":\"TNT\",\"price\":999,\"currency\":\"EUR\",\"stock\":5}'\n", base)
	fmt.Printf("  curl -s %s/admin/v1/tenants -H \"Authorization: Bearer %s\"\n\n", base, cfg.PlatformAPIKey)
	fmt.Printf("Ctrl-C stops tenantd and removes the throw-away servers.\n\n")
}

// billingCommand runs "tenantd billing export …" as the runtime role.
func billingCommand(ctx context.Context, cfg config.Config, args []string) error {
	if len(args) == 0 || args[0] != "export" {
		return errors.New("billing needs a subcommand: billing export --period YYYY-MM [--format csv|jsonl] [--out FILE]")
	}
	if cfg.DatabaseURL == "" || cfg.WorkerDatabaseURL == "" {
		return errors.New("invalid configuration: DATABASE_URL and WORKER_DATABASE_URL must be set")
	}
	// A batch job: no statement timeout (an export may run for minutes),
	// but it neither queues behind live requests' locks nor idles in a
	// transaction.
	d, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 2,
		LockTimeout: cfg.DBLockTimeout, IdleInTxTimeout: cfg.DBIdleInTxTimeout, WorkerURL: cfg.WorkerDatabaseURL})
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.CheckRuntimeRole(ctx); err != nil {
		return err
	}
	return billing.RunExportCLI(ctx, d, args[1:], os.Stdout, os.Stderr)
}

// rebuildProjections recreates the order read model of every tenant from
// the event streams, one tenant per transaction.
func rebuildProjections(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	// A batch job, like billing export: no statement timeout.
	d, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 4,
		LockTimeout: cfg.DBLockTimeout, IdleInTxTimeout: cfg.DBIdleInTxTimeout, WorkerURL: cfg.WorkerDatabaseURL})
	if err != nil {
		return err
	}
	defer d.Close()
	rdb, err := openRedis(cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	a, err := app.New(cfg, d, rdb, log)
	if err != nil {
		return err
	}
	tenants, orders := 0, 0
	for after := uuid.Nil; ; {
		page, err := a.Tenants.List(ctx, after, 500)
		if err != nil {
			return err
		}
		if len(page) > 500 {
			page = page[:500]
		}
		for _, t := range page {
			n, err := a.Orders.Rebuild(ctx, t.ID)
			if err != nil {
				return fmt.Errorf("rebuild tenant %s: %w", t.Slug, err)
			}
			tenants, orders = tenants+1, orders+n
			after = t.ID
		}
		if len(page) < 500 {
			break
		}
	}
	log.Info("projections rebuilt", "tenants", tenants, "orders", orders)
	fmt.Printf("rebuilt order_views: %d orders of %d tenants\n", orders, tenants)
	return nil
}

// verifyAudit recomputes the audit hash chains, reading as the runtime role
// under row-level security.
func verifyAudit(ctx context.Context, cfg config.Config, args []string) error {
	// A batch job, like billing export: no statement timeout.
	d, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 2,
		LockTimeout: cfg.DBLockTimeout, IdleInTxTimeout: cfg.DBIdleInTxTimeout, WorkerURL: cfg.WorkerDatabaseURL})
	if err != nil {
		return err
	}
	defer d.Close()
	return audit.RunVerifyCLI(ctx, d, args, os.Stdout)
}

// healthcheck probes the server on HTTP_ADDR, for container HEALTHCHECKs
// (the runtime image has no shell or curl).
func healthcheck(cfg config.Config) error {
	_, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz answered %d", resp.StatusCode)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
