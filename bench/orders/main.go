// Command orders measures order placement end to end against a baseline of
// the same run. It starts throw-away PostgreSQL and Redis (internal/devenv),
// migrates, creates tenants with products and their admin API keys, and
// then measures, in alternating rounds so that other work on the machine
// weighs on both sides alike:
//
//   - the service: tenantd wired by internal/app and served in this process
//     on 127.0.0.1, under a closed loop of clients sending POST /v1/orders
//     over loopback HTTP, tenants in turn, one or two items per order. Its
//     time runs until the event dispatcher has also delivered the events of
//     the placements (the billing meters count them), so that work left
//     behind is not taken for throughput;
//   - the baseline: pgbench running place_order.sql (the SQL statements the
//     service sends for one placement, under row-level security, as the
//     runtime role tenantd_app) on the same database with as many
//     connections, while tenantd is stopped. The dispatcher's subscribers
//     are then moved past the events pgbench appended.
//
// Before measuring it traces one placement of the service and refuses to
// run when place_order.sql no longer sends the same statements.
//
// After the last round it measures GET /v1/orders/{id} of the orders placed.
// It prints throughput, latency and CPU time of each, the ratio of the
// service's placements to pgbench's and the verdict against the targets
// (at least 0.50, p99 under 50 ms), checks that both sides wrote what they
// were timed for, and removes the throw-away servers. Every phase ends by
// itself, after its time or -limit requests, whichever comes first.
//
//	go run ./bench/orders [-clients 8] [-duration 20s] [-rounds 4] [-cpuprofile cpu.out]
//	go run ./bench/orders -trace   # the statements one placement sends
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
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// options are the command's flags.
type options struct {
	tenants     int
	products    int
	clients     int
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
	var o options
	flag.IntVar(&o.tenants, "tenants", 100, "tenants to create")
	flag.IntVar(&o.products, "products", 10, "products per tenant")
	flag.IntVar(&o.clients, "clients", 8, "concurrent clients of the service, and pgbench connections")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "measured placement time of each side, split over the rounds (whole seconds per round)")
	flag.IntVar(&o.rounds, "rounds", 4, "rounds of service then pgbench")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each measured phase (whole seconds)")
	flag.DurationVar(&o.getDuration, "get-duration", 10*time.Second, "measured time of the GET phase")
	flag.Int64Var(&o.limit, "limit", 1_000_000, "most requests of each service phase")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (server and load generator) over the POST phases")
	flag.StringVar(&o.logLevel, "log-level", "warn", "tenantd's LOG_LEVEL; access log lines are info")
	flag.BoolVar(&o.background, "background", true, "run tenantd's background work (event dispatcher, sweepers) as tenantd serve does; false shows what it costs")
	flag.BoolVar(&o.statements, "statements", false, "have pgbench report each statement's latency (-r; costs it a little) and print the last round's")
	flag.BoolVar(&o.trace, "trace", false, "log the statements of one placement and exit")
	flag.Parse()
	perRound := o.duration / time.Duration(max(o.rounds, 1))
	if o.tenants < 1 || o.products < 2 || o.clients < 1 || o.rounds < 1 || perRound < time.Second ||
		o.getDuration < time.Second || o.limit < 1 {
		fmt.Fprintln(os.Stderr, "orders: need -tenants ≥ 1, -products ≥ 2, -clients ≥ 1, -rounds ≥ 1, -duration ≥ 1s per round, -get-duration ≥ 1s, -limit ≥ 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
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

	m, err := b.measure(ctx, out)
	if err != nil {
		return err
	}
	report(out, o, m)
	var failures []string
	for _, r := range []result{m.post, m.get, m.pgbench} {
		if r.failed > 0 {
			failures = append(failures, fmt.Sprintf("%s: %d failed, first: %v", r.name, r.failed, r.firstErr))
		}
	}
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "\n"))
	}
	return nil
}

// report prints the phases and the service's ratio to pgbench, with the
// verdict against the targets. CPU columns are milliseconds of CPU per
// request: "app" is this process (server and load generator) for the
// service and the pgbench process for pgbench; "pg" is the PostgreSQL
// cluster. "others" is the share of the machine's CPU that other processes
// took meanwhile.
func report(out io.Writer, o options, m measurement) {
	fmt.Fprintf(out, "\n%d tenants, %d clients, %d rounds, placements measured for %s per side\n\n",
		o.tenants, o.clients, o.rounds, o.duration)
	fmt.Fprintf(out, "%-28s %8s %6s %8s %7s %7s %7s %7s %7s %7s %6s\n",
		"", "requests", "failed", "per s", "mean ms", "p50 ms", "p95 ms", "p99 ms", "app CPU", "pg CPU", "others")
	for _, r := range []result{m.post, m.get, m.pgbench} {
		fmt.Fprintf(out, "%-28s %8d %6d %8.1f %7s %7s %7s %7s %7s %7s %6s\n", r.name, r.ok, r.failed, r.perSecond(),
			ms(r.mean()), ms(r.percentile(0.50)), ms(r.percentile(0.95)), ms(r.percentile(0.99)),
			r.cpuPer(r.cpu.app), r.cpuPer(r.cpu.postgres), r.cpu.others())
	}
	ratio := m.post.perSecond() / m.pgbench.perSecond()
	lo, hi := m.ratioRange()
	fmt.Fprintf(out, "\nservice placements / pgbench placements: %.2f, rounds %.2f–%.2f (target ≥ 0.50: %s)\n",
		ratio, lo, hi, verdict(ratio >= 0.5))
	if m.post.drain > 0 {
		serving := float64(m.post.ok) / (m.post.elapsed - m.post.drain).Seconds()
		fmt.Fprintf(out, "  the service's rate counts %s s after the last responses, until the event dispatcher had delivered\n"+
			"  their events; while responding it placed %.1f/s, %.2f of pgbench's\n",
			secs(m.post.drain), serving, serving/m.pgbench.perSecond())
	}
	fmt.Fprintf(out, "service POST p99: %s ms at %d clients (target < 50 ms: %s)\n",
		ms(m.post.percentile(0.99)), o.clients, verdict(m.post.percentile(0.99) < 50*time.Millisecond))
	if c, ok := m.cpuRatio(); ok {
		fmt.Fprintf(out, "CPU per placement, all processes: service %s ms, pgbench %s ms: %.2f×\n",
			ms(m.post.cpuTotalPer()), ms(m.pgbench.cpuTotalPer()), c)
	}
	fmt.Fprintf(out, "load average after: %s\n", loadAverage())
	if m.statements != "" {
		fmt.Fprintf(out, "\npgbench, last round: %s", m.statements)
	}
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// redisLogger sends go-redis's own messages to slog, as main.go does.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
