package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"
)

// bench is one run: the throw-away database with its population, and how
// to measure both sides on it.
type bench struct {
	o      options
	log    *slog.Logger
	db     *database
	pop    *population
	in     *inspector
	pb     pgbench
	pgData string // the cluster's data directory, to measure its CPU time
}

// setUp creates the population through a first tenantd and checks that
// place_order.sql sends what that tenantd sends for a placement, then
// creates the helper table of the script, and the inspector.
func (b *bench) setUp(ctx context.Context, pgbenchBin string) (err error) {
	srv, err := startServer(ctx, b.db, b.o.logLevel, false, b.log)
	if err != nil {
		return err
	}
	b.pop, err = populate(ctx, srv.app, b.o.tenants, b.o.products)
	if err == nil {
		c := newClient(srv.base, 1, b.pop)
		var log string
		if log, err = tracePlacement(ctx, b.db, c); err == nil {
			err = checkScript(log)
		}
		c.close()
	}
	if err = errors.Join(err, srv.stop()); err != nil {
		return err
	}
	targets, err := writeTargets(ctx, b.db.OwnerURL, b.pop)
	if err != nil {
		return err
	}
	if b.in, err = newInspector(ctx, b.db.env.AdminURL, b.db.Name); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tenantd-bench-orders-")
	if err != nil {
		return err
	}
	b.pgData = filepath.Join(b.db.env.Dir(), "pg")
	b.pb = pgbench{bin: pgbenchBin, url: b.db.AppURL, targets: targets, dir: dir, pgData: b.pgData, statements: b.o.statements}
	return nil
}

func (b *bench) close(ctx context.Context) error {
	var err error
	if b.in != nil {
		err = b.in.close(ctx)
	}
	if b.pb.dir != "" {
		err = errors.Join(err, os.RemoveAll(b.pb.dir))
	}
	return err
}

// trace serves tenantd and logs the statements of one placement.
func (b *bench) trace(ctx context.Context, out io.Writer) (err error) {
	srv, err := startServer(ctx, b.db, b.o.logLevel, b.o.background, b.log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()
	c := newClient(srv.base, 1, b.pop)
	defer c.close()
	log, err := tracePlacement(ctx, b.db, c)
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, log)
	return err
}

// measurement is the results of all rounds, merged per side.
type measurement struct {
	post, get, pgbench result
	rounds             []round
	// statements is pgbench's per-statement report of the last round.
	statements string
}

// round is the throughput of both sides in one round.
type round struct {
	service, pgbench float64
}

// measure runs the rounds (service, then pgbench, each after a warm-up),
// then the GET phase, and checks that both sides wrote what they reported
// and that place_order.sql writes what the service writes.
func (b *bench) measure(ctx context.Context, out io.Writer) (m measurement, err error) {
	var (
		posts, pgs []result
		orders     placements
		perRound   = b.o.duration / time.Duration(b.o.rounds)
		svcShape   shape
		pgShape    shape
	)
	stopProfile, err := startProfile(b.o.cpuProfile)
	if err != nil {
		return measurement{}, err
	}
	defer func() { err = errors.Join(err, stopProfile()) }()
	for i := range b.o.rounds {
		from, err := b.in.lastPosition(ctx)
		if err != nil {
			return measurement{}, err
		}
		post, err := b.serviceRound(ctx, perRound, &orders)
		if err != nil {
			return measurement{}, err
		}
		if i == 0 {
			if svcShape, err = b.in.shapeOf(ctx, from); err != nil {
				return measurement{}, err
			}
		}
		if from, err = b.in.lastPosition(ctx); err != nil {
			return measurement{}, err
		}
		pg, err := b.baselineRound(ctx, perRound)
		if err != nil {
			return measurement{}, err
		}
		if i == 0 {
			if pgShape, err = b.in.shapeOf(ctx, from); err != nil {
				return measurement{}, err
			}
			if err := sameShape(svcShape, pgShape); err != nil {
				return measurement{}, err
			}
		}
		posts, pgs = append(posts, post), append(pgs, pg)
		m.statements = pg.detail
		m.rounds = append(m.rounds, round{service: post.perSecond(), pgbench: pg.perSecond()})
		fmt.Fprintf(out, "round %d/%d: service %.1f/s p99 %s ms drain %s s (others %s), pgbench %.1f/s p99 %s ms (others %s): %.2f\n",
			i+1, b.o.rounds, post.perSecond(), ms(post.percentile(0.99)), secs(post.drain), post.cpu.others(),
			pg.perSecond(), ms(pg.percentile(0.99)), pg.cpu.others(),
			post.perSecond()/pg.perSecond())
	}
	if err := stopProfile(); err != nil {
		return measurement{}, err
	}
	stopProfile = func() error { return nil }
	m.post, m.pgbench = merge(posts), merge(pgs)
	if len(orders.all) == 0 {
		return measurement{}, fmt.Errorf("no order was placed; first error: %w", m.post.firstErr)
	}
	if m.get, err = b.getPhase(ctx, orders.all); err != nil {
		return measurement{}, err
	}
	return m, nil
}

// serviceRound serves a fresh tenantd, warms it up (API-key cache, the
// pool's connections and their prepared statements), places orders for d,
// and stops it.
func (b *bench) serviceRound(ctx context.Context, d time.Duration, orders *placements) (_ result, err error) {
	srv, err := startServer(ctx, b.db, b.o.logLevel, b.o.background, b.log)
	if err != nil {
		return result{}, err
	}
	stopped := false
	defer func() {
		if !stopped {
			err = errors.Join(err, srv.stop())
		}
	}()
	c := newClient(srv.base, b.o.clients, b.pop)
	defer c.close()
	before, err := b.in.tally(ctx)
	if err != nil {
		return result{}, err
	}
	w := phase{name: "warm-up", clients: b.o.clients, duration: b.o.warmup, limit: b.o.limit,
		do: func(ctx context.Context, seq int64) error { return c.place(ctx, seq, nil) }}.run(ctx)
	if w.failed > 0 {
		return result{}, fmt.Errorf("warm-up: %d of %d requests failed, first: %w", w.failed, w.failed+w.ok, w.firstErr)
	}
	if err := b.drain(ctx); err != nil {
		return result{}, fmt.Errorf("after the warm-up: %w", err)
	}
	cpu := sampleCPU(b.pgData)
	r := phase{name: "service POST /v1/orders", clients: b.o.clients, duration: d, limit: b.o.limit,
		do: func(ctx context.Context, seq int64) error { return c.place(ctx, seq, orders) }}.run(ctx)
	// The placements' work is done when the event dispatcher has delivered
	// their events too (the billing meters count order.placed): the time
	// that takes after the last response counts as the phase's.
	if b.o.background {
		start := time.Now()
		if err := b.drain(ctx); err != nil {
			return result{}, err
		}
		r.drain = time.Since(start)
		r.elapsed += r.drain
	}
	r.cpu = sampleCPU(b.pgData).since(cpu)
	r.warm = w.ok
	c.close()
	stopped = true
	if err := srv.stop(); err != nil {
		return result{}, fmt.Errorf("stop tenantd: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	after, err := b.in.tally(ctx)
	if err != nil {
		return result{}, err
	}
	if r.failed == 0 {
		if err := checkWrites("the service", before, after, w.ok+r.ok); err != nil {
			return result{}, err
		}
	}
	return r, nil
}

// drain waits until tenantd's event dispatcher has delivered every event
// appended so far, for at most a minute. Without background work there is
// no dispatcher to wait for.
func (b *bench) drain(ctx context.Context) error {
	if !b.o.background {
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := b.in.undispatched(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the event dispatcher is still %d positions behind after a minute", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// baselineRound runs place_order.sql with pgbench, as many connections as
// the service has clients, for d after a warm-up run, and then moves the
// dispatcher's subscribers past the events it appended.
func (b *bench) baselineRound(ctx context.Context, d time.Duration) (result, error) {
	before, err := b.in.tally(ctx)
	if err != nil {
		return result{}, err
	}
	from, err := b.in.lastPosition(ctx)
	if err != nil {
		return result{}, err
	}
	threads := runtime.NumCPU()
	var warm int64
	if b.o.warmup >= time.Second {
		w, err := b.pb.run(ctx, "warm-up", b.o.clients, b.o.warmup, threads)
		if err != nil {
			return result{}, err
		}
		warm = w.ok
	}
	r, err := b.pb.run(ctx, "pgbench place_order.sql", b.o.clients, d, threads)
	if err != nil {
		return result{}, err
	}
	r.warm = warm
	after, err := b.in.tally(ctx)
	if err != nil {
		return result{}, err
	}
	if r.failed == 0 {
		if err := checkWrites("pgbench", before, after, warm+r.ok); err != nil {
			return result{}, err
		}
	}
	to, err := b.in.lastPosition(ctx)
	if err != nil {
		return result{}, err
	}
	return r, b.in.skipEvents(ctx, from, to)
}

// getPhase serves a fresh tenantd and reads the placed orders back, in
// turn, after a warm-up.
func (b *bench) getPhase(ctx context.Context, orders []placed) (_ result, err error) {
	srv, err := startServer(ctx, b.db, b.o.logLevel, b.o.background, b.log)
	if err != nil {
		return result{}, err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()
	c := newClient(srv.base, b.o.clients, b.pop)
	defer c.close()
	get := func(ctx context.Context, seq int64) error { return c.get(ctx, seq, orders) }
	w := phase{name: "warm-up", clients: b.o.clients, duration: b.o.warmup, limit: b.o.limit, do: get}.run(ctx)
	if w.failed > 0 {
		return result{}, fmt.Errorf("warm-up: %d of %d requests failed, first: %w", w.failed, w.failed+w.ok, w.firstErr)
	}
	cpu := sampleCPU(b.pgData)
	r := phase{name: "service GET /v1/orders/{id}", clients: b.o.clients, duration: b.o.getDuration, limit: b.o.limit,
		do: get}.run(ctx)
	r.cpu = sampleCPU(b.pgData).since(cpu)
	return r, ctx.Err()
}

// merge adds up the rounds of one side.
func merge(rs []result) result {
	if len(rs) == 0 {
		return result{}
	}
	m := result{name: rs[0].name, cpu: cpuUse{ok: true}}
	var lats [][]time.Duration
	for _, r := range rs {
		m.ok += r.ok
		m.failed += r.failed
		m.warm += r.warm
		m.elapsed += r.elapsed
		m.drain += r.drain
		m.cpu.app += r.cpu.app
		m.cpu.postgres += r.cpu.postgres
		m.cpu.busy += r.cpu.busy
		m.cpu.wall += r.cpu.wall
		m.cpu.ok = m.cpu.ok && r.cpu.ok
		if m.firstErr == nil {
			m.firstErr = r.firstErr
		}
		lats = append(lats, r.latencies)
	}
	m.latencies = slices.Concat(lats...)
	slices.Sort(m.latencies)
	return m
}

// ratioRange is the lowest and highest ratio of the rounds.
func (m measurement) ratioRange() (lo, hi float64) {
	for i, r := range m.rounds {
		x := r.service / r.pgbench
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

// cpuRatio is the CPU time of all processes per placement, the service's
// over pgbench's: a measure less disturbed than throughput by other work on
// the machine.
func (m measurement) cpuRatio() (float64, bool) {
	if !m.post.cpu.ok || !m.pgbench.cpu.ok || m.post.ok == 0 || m.pgbench.ok == 0 {
		return 0, false
	}
	return float64(m.post.cpuTotalPer()) / float64(m.pgbench.cpuTotalPer()), true
}

// startProfile starts the CPU profiler when path is set; stop stops it and
// closes the file.
func startProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}
