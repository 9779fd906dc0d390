// Command tenantd is a multi-tenant SaaS API: products with stock, orders,
// payments, members, roles, API keys and single sign-on, with every tenant's
// data isolated by PostgreSQL row-level security.
//
// Usage:
//
//	tenantd serve                      serve the API (DATABASE_URL, REDIS_URL, …)
//	tenantd migrate up|down [N]|status apply or roll back migrations (MIGRATE_DATABASE_URL)
//	tenantd dev                        throw-away PostgreSQL and Redis, a demo tenant and identity provider, serve
//	tenantd help                       every subcommand and the configuration
//
// Each subcommand (cmd_*.go) parses its own flags first: --help prints its
// usage and exits 0 without reading the configuration or connecting to
// anything; unknown flags and arguments exit 2. Only then is the
// configuration loaded and, through connect, the database, Redis and the
// app opened.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/app"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/obs"
)

const overview = `tenantd — multi-tenant SaaS API

Usage:
  tenantd serve                        serve the API
  tenantd migrate up | down [N] | status
                                       apply, roll back (all, or N steps) or show migrations
  tenantd billing export --period YYYY-MM [--format csv|jsonl|cloudevents|stripe-meter-events] [--out FILE] [--provisional]
                                       the billing file of a month (closes an ended month)
  tenantd projections rebuild          recreate every tenant's order read model from its events
  tenantd audit verify [--tenant ID|SLUG | --platform] [--max-unsealed-age 10s]
                                       recompute the audit hash chain of every tenant (or one,
                                       or the platform's);
                                       prints each chain's head, exits 1 if one is broken or a
                                       row has waited longer than the maximum age to be sealed
  tenantd healthcheck                  exit 0 when the local server answers /healthz
  tenantd dev                          start throw-away PostgreSQL and Redis (unless
                                       DATABASE_URL / REDIS_URL are set), migrate, create
                                       the demo tenant "acme", start a development identity
                                       provider it trusts, and serve
  tenantd help [SUBCOMMAND]            this text, or a subcommand's (as SUBCOMMAND --help)

Every subcommand takes --help. Exit status: 0 done, 1 failed, 2 bad command line.

Configuration comes from the environment:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], env{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// env is what a subcommand gets from the process: the environment and the
// standard streams, so that tests can run it in-process.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// errUsage means the command line was refused and its usage printed: exit
// status 2.
var errUsage = errors.New("bad command line")

// exitCode reports err on stderr and returns the exit status for it.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(stderr, "tenantd:", err)
	return 1
}

// subcommand returns the subcommand called name, or nil; each parses its
// own flags.
func subcommand(name string) func(ctx context.Context, e env, args []string) error {
	switch name {
	case "serve":
		return runServe
	case "migrate":
		return runMigrate
	case "dev":
		return runDev
	case "billing":
		return runBilling
	case "projections":
		return runProjections
	case "audit":
		return runAudit
	case "healthcheck":
		return runHealthcheck
	}
	return nil
}

// run runs the subcommand args[0]. It returns flag.ErrHelp when help was
// asked for and printed, errUsage when the command line was refused.
func run(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		printOverview(e.stdout)
		return nil
	}
	switch name := args[0]; name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && subcommand(args[1]) != nil {
			return subcommand(args[1])(ctx, e, append(args[2:len(args):len(args)], "--help"))
		}
		if len(args) > 1 {
			fmt.Fprintf(e.stderr, "tenantd help: unknown subcommand %q\n\n", args[1])
			printOverview(e.stderr)
			return errUsage
		}
		printOverview(e.stdout)
		return nil
	default:
		cmd := subcommand(name)
		if cmd == nil {
			fmt.Fprintf(e.stderr, "tenantd: unknown subcommand %q\n\n", name)
			printOverview(e.stderr)
			return errUsage
		}
		return cmd(ctx, e, args[1:])
	}
}

func printOverview(w io.Writer) {
	fmt.Fprint(w, overview)
	for _, v := range config.Vars {
		fmt.Fprintf(w, "  %-27s %s (default: %s)\n", v.Name, v.Meaning, v.Default)
	}
}

// usage is a subcommand's help: its synopsis and description; the flags'
// defaults are printed after it.
type usage struct {
	name string // "billing export"
	text string // from "Usage:" on
}

// parseFlags parses args with fs. --help prints the usage to stdout and
// returns flag.ErrHelp; a bad flag, or more than maxArgs positional
// arguments (any number when negative), prints the problem and the usage
// to stderr and returns errUsage.
func parseFlags(e env, fs *flag.FlagSet, u usage, args []string, maxArgs int) error {
	var msg strings.Builder
	fs.SetOutput(&msg)
	fs.Usage = func() {} // printed below, to the right stream
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(e.stdout, fs, u)
		return flag.ErrHelp
	case err != nil:
		fmt.Fprintf(e.stderr, "tenantd %s: %s", u.name, msg.String())
		printUsage(e.stderr, fs, u)
		return errUsage
	case maxArgs >= 0 && fs.NArg() > maxArgs:
		fmt.Fprintf(e.stderr, "tenantd %s: unexpected argument %q\n", u.name, fs.Arg(maxArgs))
		printUsage(e.stderr, fs, u)
		return errUsage
	}
	return nil
}

// subcommandArgs are the flags of a subcommand such as "audit verify":
// audit.VerifyArgs, billing.ExportArgs, noFlags.
type subcommandArgs interface {
	Flags(fs *flag.FlagSet)
	Validate() error
}

// noFlags are the flags of a subcommand that has none.
type noFlags struct{}

func (noFlags) Flags(*flag.FlagSet) {}
func (noFlags) Validate() error     { return nil }

// parseSubcommand parses the command line of "<u.name> <verb> [flags]":
// args must start with verb, and what follows it are a's flags, with
// usage su, which a must find valid.
func parseSubcommand(e env, u usage, verb string, args []string, su usage, a subcommandArgs) error {
	fs := flag.NewFlagSet(u.name, flag.ContinueOnError)
	if err := parseFlags(e, fs, u, args, -1); err != nil {
		return err
	}
	if fs.NArg() == 0 || fs.Arg(0) != verb {
		return refuse(e, fs, u, "needs a subcommand: %s", verb)
	}
	sub := flag.NewFlagSet(su.name, flag.ContinueOnError)
	a.Flags(sub)
	if err := parseFlags(e, sub, su, fs.Args()[1:], 0); err != nil {
		return err
	}
	if err := a.Validate(); err != nil {
		return refuse(e, sub, su, "%v", err)
	}
	return nil
}

// parseAndLoad accepts the command line of a command that takes no flags
// or arguments (--help aside), then loads the configuration (loadConfig).
func parseAndLoad(e env, u usage, args []string) (config.Config, *slog.Logger, error) {
	fs := flag.NewFlagSet(u.name, flag.ContinueOnError)
	if err := parseFlags(e, fs, u, args, 0); err != nil {
		return config.Config{}, nil, err
	}
	return loadConfig(e)
}

// refuse prints why the command line is wrong, and the usage, to stderr,
// and returns errUsage.
func refuse(e env, fs *flag.FlagSet, u usage, format string, a ...any) error {
	why := strings.TrimPrefix(fmt.Sprintf(format, a...), u.name+": ")
	fmt.Fprintf(e.stderr, "tenantd %s: %s\n", u.name, why)
	printUsage(e.stderr, fs, u)
	return errUsage
}

func printUsage(w io.Writer, fs *flag.FlagSet, u usage) {
	fmt.Fprint(w, u.text)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// loadConfig reads the configuration from the environment and sets up
// logging by it: the first thing a subcommand does once its command line
// is accepted.
func loadConfig(e env) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(e.getenv)
	if err != nil {
		return config.Config{}, nil, err
	}
	log := newLogger(cfg, e.stderr)
	slog.SetDefault(log)
	redis.SetLogger(redisLogger{log})
	return cfg, log, nil
}

// redisLogger sends go-redis's own messages (reconnects, pool errors) to
// slog, so every line follows LOG_FORMAT.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(obs.TraceHandler{Handler: slog.NewTextHandler(w, opts)})
	}
	return slog.New(obs.TraceHandler{Handler: slog.NewJSONHandler(w, opts)})
}

// connectOptions says what a subcommand needs from connect.
type connectOptions struct {
	// batch makes a pool for a batch job (billing export, projections
	// rebuild, audit verify) of batchConns connections: no statement
	// timeout, since a job may run a long statement, but it neither queues
	// behind live requests' locks nor idles in a transaction.
	batch      bool
	batchConns int
	// checkRole refuses a database role that could bypass row-level
	// security (db.CheckRuntimeRole).
	checkRole bool
	// redis opens Redis; app also wires the app (which needs Redis).
	redis, app bool
}

// conn is what connect opened; close closes it in reverse order.
type conn struct {
	db    *db.DB
	redis *redis.Client
	app   *app.App
	close func()
}

// connect opens the database pools (runtime and worker), checks the role,
// opens Redis and wires the app, as opts asks: the start-up every
// subcommand that touches data shares. On error nothing stays open.
func connect(ctx context.Context, cfg config.Config, log *slog.Logger, opts connectOptions) (c conn, err error) {
	var closers []func()
	c.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			c.close()
			c = conn{}
		}
	}()
	dbOpts := db.Options{MaxConns: cfg.DBMaxConns, Tracing: cfg.Tracing, LockTimeout: cfg.DBLockTimeout,
		StatementTimeout: cfg.DBStatementTimeout, IdleInTxTimeout: cfg.DBIdleInTxTimeout, WorkerURL: cfg.WorkerDatabaseURL}
	if opts.batch {
		dbOpts.MaxConns, dbOpts.Tracing, dbOpts.StatementTimeout = opts.batchConns, false, 0
	}
	if c.db, err = db.Open(ctx, cfg.DatabaseURL, dbOpts); err != nil {
		return c, err
	}
	closers = append(closers, func() {
		if err := c.db.Close(); err != nil {
			log.Warn("database: close", "err", err)
		}
	})
	if opts.checkRole {
		if err := c.db.CheckRuntimeRole(ctx); err != nil {
			return c, err
		}
	}
	if !opts.redis && !opts.app {
		return c, nil
	}
	if c.redis, err = openRedis(cfg); err != nil {
		return c, err
	}
	closers = append(closers, func() {
		if err := c.redis.Close(); err != nil {
			log.Warn("redis: close", "err", err)
		}
	})
	if opts.app {
		if c.app, err = app.New(cfg, c.db, c.redis, log); err != nil {
			return c, err
		}
	}
	return c, nil
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
			return nil, errors.Join(fmt.Errorf("redis tracing: %w", err), rdb.Close())
		}
	}
	return rdb, nil
}

// setupTracing turns tracing on when an OTLP endpoint is configured, and
// returns the function that flushes it at exit.
func setupTracing(ctx context.Context, cfg *config.Config, log *slog.Logger) func() {
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

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (Go 1.24+)
	return hex.EncodeToString(b)
}
