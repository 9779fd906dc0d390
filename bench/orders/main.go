// Command orders measures order placement end to end against baselines of
// the same run. It starts throw-away PostgreSQL and Redis (internal/devenv),
// migrates, creates tenants with products and their admin API keys, loads
// the reference schema (pgref_schema.sql) into a database of its own, and
// then runs its scenarios. Each scenario measures its sides in alternating
// rounds, so that other work on the machine weighs on all of them alike:
//
//   - place (for each -clients count, 8 and 32 by default): the service,
//     tenantd wired by internal/app and served in this process on
//     127.0.0.1, under a closed loop of clients sending POST /v1/orders
//     over loopback HTTP, tenants in turn, one or two items per order;
//     then pgbench running place_order.sql (the statements the service
//     sends for one placement, under row-level security, as the runtime
//     role tenantd_app) on the same database with as many connections;
//     then pgbench running pgref_order.sql, the bare order SQL of the
//     target, as role app on the pgref database. tenantd is stopped while
//     pgbench runs. The targets: at 8 clients the service reaches at least
//     0.50 of pgref's throughput, with p99 under 50 ms;
//   - hot: the same placements by -hot-clients clients (8) all for one
//     tenant, against as many clients each placing for a tenant of its own
//     (target: at least 0.80 of it);
//   - writes: -writers clients (16) of one tenant doing the mixed write
//     load of internal/app/hotwrite_test.go (tenant and product edits,
//     stock adjustments, two-item orders each paid or cancelled, API keys
//     and roles created and deleted), against as many writers each on a
//     tenant of its own (target: at least 410 writes/s on one tenant).
//
// A service round runs until the event dispatcher has delivered the events
// of its requests and the audit sealer has sealed their audit entries, so
// that work left behind is not taken for throughput. Every round of the
// service runs on a fresh tenantd after a warm-up; pgbench's events are
// skipped for the dispatcher's subscribers, and its audit rows are sealed
// before the next service round is timed.
//
// Before measuring it traces one placement of the service and refuses to
// run when place_order.sql no longer sends the same statements; the first
// placing round also compares the JSON both write. After the place
// scenarios it measures GET /v1/orders/{id} of the orders placed.
//
// For each side it prints throughput, latency (p50, p95, p99) and CPU time
// per request (this process or pgbench, the PostgreSQL cluster, both), and
// the ratios of the first side to the others, and the verdicts against the
// targets; it checks that each side wrote what it was timed for, and
// removes the throw-away servers. Every phase ends by itself, after its
// time or -limit requests, whichever comes first. A default run takes
// about four minutes.
//
//	go run ./bench/orders [-scenarios place,hot,writes] [-clients 8,32] [-duration 12s] [-rounds 3] [-cpuprofile cpu.out]
//	go run ./bench/orders -trace   # the statements one placement sends, checked against place_order.sql
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// options are the command's flags.
type options struct {
	tenants     int
	products    int
	scenarios   []string
	clients     []int
	hotClients  int
	writers     int
	duration    time.Duration
	rounds      int
	warmup      time.Duration
	getDuration time.Duration
	limit       int64
	cpuProfile  string
	logLevel    string
	background  bool
	statements  bool
	trace       bool
}

func main() {
	var (
		o                  options
		scenarios, clients string
	)
	flag.IntVar(&o.tenants, "tenants", 100, "tenants to create")
	flag.IntVar(&o.products, "products", 10, "products per tenant")
	flag.StringVar(&scenarios, "scenarios", "place,hot,writes", "scenarios to run, in order: place, hot, writes")
	flag.StringVar(&clients, "clients", "8,32", "concurrent clients of the place scenario (and pgbench connections), one run of it per count")
	flag.IntVar(&o.hotClients, "hot-clients", 8, "clients of the hot scenario")
	flag.IntVar(&o.writers, "writers", 16, "writers of the writes scenario")
	flag.DurationVar(&o.duration, "duration", 12*time.Second, "measured time of each side of a scenario, split over the rounds (whole seconds per round)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of each scenario")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each measured phase (whole seconds)")
	flag.DurationVar(&o.getDuration, "get-duration", 5*time.Second, "measured time of the GET phase after the place scenarios; 0 skips it")
	flag.Int64Var(&o.limit, "limit", 1_000_000, "most requests of each service phase")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (tenantd, labelled side=background for its background work, and the load generator, side=client) over the scenarios")
	flag.StringVar(&o.logLevel, "log-level", "warn", "tenantd's LOG_LEVEL; access log lines are info")
	flag.BoolVar(&o.background, "background", true, "run tenantd's background work (event dispatcher, audit sealer, sweepers) as tenantd serve does; false shows what it costs")
	flag.BoolVar(&o.statements, "statements", false, "have pgbench report each statement's latency (-r; costs it a little) and print the last round's")
	flag.BoolVar(&o.trace, "trace", false, "log the statements of one placement, check them against place_order.sql and exit")
	flag.Parse()
	var err error
	if o.scenarios, o.clients, err = parseLists(scenarios, clients); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(2)
	}
	perRound := o.duration / time.Duration(max(o.rounds, 1))
	need := o.tenants
	if slices.Contains(o.scenarios, "hot") {
		need = max(need, o.hotClients)
	}
	if slices.Contains(o.scenarios, "writes") {
		need = max(need, o.writers)
	}
	if o.tenants < 1 || o.tenants < need || o.products < hotProducts || o.hotClients < 1 || o.writers < 1 || o.rounds < 1 ||
		perRound < time.Second || o.getDuration < 0 || o.limit < 1 {
		fmt.Fprintf(os.Stderr, "orders: need -tenants ≥ 1 and ≥ the hot clients and writers, -products ≥ %d, -hot-clients ≥ 1, -writers ≥ 1, -rounds ≥ 1, -duration ≥ 1s per round, -get-duration ≥ 0, -limit ≥ 1\n", hotProducts)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

// parseLists reads the comma-separated -scenarios and -clients.
func parseLists(scenarios, clients string) ([]string, []int, error) {
	var (
		ss []string
		cs []int
	)
	for s := range strings.SplitSeq(scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ss = append(ss, s)
		}
	}
	for s := range strings.SplitSeq(clients, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, nil, fmt.Errorf("-clients: %q is not a positive number", s)
		}
		cs = append(cs, n)
	}
	if len(ss) == 0 || len(cs) == 0 {
		return nil, nil, errors.New("-scenarios and -clients must name at least one")
	}
	return ss, cs, nil
}

func run(ctx context.Context, o options, out io.Writer) (err error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	redis.SetLogger(redisLogger{log})
	pgbenchBin, err := findPgbench()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "machine: %d CPUs (%s), %s, load average %s\n", runtime.NumCPU(), readMachine().cpu, runtime.Version(), loadAverage())

	started := time.Now()
	d, err := startDatabase(ctx, log)
	if err != nil {
		return err
	}
	defer d.stop()
	b := &bench{o: o, log: log, db: d}
	if err := b.setUp(ctx, pgbenchBin); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.close(context.WithoutCancel(ctx))) }()
	fmt.Fprintf(out, "setup: %d tenants × %d products, servers started and migrated in %s\n",
		o.tenants, o.products, time.Since(started).Round(100*time.Millisecond))
	if o.trace {
		return b.trace(ctx, out)
	}

	scenarios, err := b.scenarios()
	if err != nil {
		return err
	}
	stopProfile, err := startProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopProfile()) }()
	var (
		outcomes []outcome
		failures []string
	)
	for _, sc := range scenarios {
		oc, err := b.runScenario(ctx, sc, out)
		if err != nil {
			return err
		}
		outcomes = append(outcomes, oc)
		for _, r := range oc.merged {
			if r.failed > 0 {
				failures = append(failures, fmt.Sprintf("%s, %s: %d failed, first: %v", sc.name, r.name, r.failed, r.firstErr))
			}
		}
	}
	if err := stopProfile(); err != nil {
		return err
	}
	stopProfile = func() error { return nil }
	fmt.Fprintf(out, "\nRESULTS: %d tenants × %d products, %d rounds, %s measured per side of each scenario\n",
		o.tenants, o.products, o.rounds, o.duration)
	for _, oc := range outcomes {
		oc.report(out)
	}
	if o.getDuration > 0 && len(b.orders.all) > 0 {
		get, err := b.getPhase(ctx, o.clients[0], b.orders.all)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\n%s, %d clients: %d requests, %d failed, %.1f/s, p50 %s ms, p99 %s ms, CPU per request app %s ms, pg %s ms\n",
			get.name, o.clients[0], get.ok, get.failed, get.perSecond(), ms(get.percentile(0.5)), ms(get.percentile(0.99)),
			get.cpuPer(get.cpu.app), get.cpuPer(get.cpu.postgres))
		if get.failed > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d failed, first: %v", get.name, get.failed, get.firstErr))
		}
	}
	fmt.Fprintf(out, "\nverdicts:\n")
	for _, oc := range outcomes {
		for _, v := range oc.verdicts {
			fmt.Fprintf(out, "  %s: %s, %s\n", v.target, v.measured, metOrNot(v.met))
		}
	}
	fmt.Fprintf(out, "load average after: %s\n", loadAverage())
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "\n"))
	}
	return nil
}

// redisLogger sends go-redis's own messages to slog, as main.go does.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
