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
	"strconv"
	"time"
)

// bench is one run: the throw-away database with its population, and how
// to measure each side on it.
type bench struct {
	o      options
	log    *slog.Logger
	db     *database
	pop    *population
	in     *inspector
	pb     pgbench
	own    script // place_order.sql on tenantd's database
	ref    *pgref
	pgData string // the cluster's data directory, to measure its CPU time

	// orders are the orders the measured placements of the service
	// created, to read them back.
	orders placements
	// shapesChecked says the JSON of place_order.sql was compared with the
	// service's.
	shapesChecked bool
}

// setUp creates the population through a first tenantd and checks that
// place_order.sql sends what that tenantd sends for a placement, then
// creates the helper table of the script, the pgref database and the
// inspector.
func (b *bench) setUp(ctx context.Context, pgbenchBin string) (err error) {
	srv, err := startServer(ctx, b.db, b.o.logLevel, false, b.log)
	if err != nil {
		return err
	}
	b.pop, err = populate(ctx, srv.app, b.o.tenants, b.o.products)
	if err == nil {
		c := newClient(srv.base, 1, b.pop)
		var log string
		// With -trace, b.trace shows what differs instead.
		if log, err = tracePlacement(ctx, b.db, c); err == nil && !b.o.trace {
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
	if b.ref, err = loadPgref(ctx, b.db.env.AdminURL); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tenantd-bench-orders-")
	if err != nil {
		return err
	}
	b.pgData = filepath.Join(b.db.env.Dir(), "pg")
	b.pb = pgbench{bin: pgbenchBin, dir: dir, pgData: b.pgData, statements: b.o.statements}
	b.own = script{file: "place_order.sql", sql: placeOrderSQL, url: b.db.AppURL,
		defines: []string{"targets=" + strconv.Itoa(targets)}}
	return nil
}

func (b *bench) close(ctx context.Context) error {
	var err error
	if b.in != nil {
		err = b.in.close(ctx)
	}
	if b.ref != nil {
		err = errors.Join(err, b.ref.close(ctx))
	}
	if b.pb.dir != "" {
		err = errors.Join(err, os.RemoveAll(b.pb.dir))
	}
	return err
}

// trace serves tenantd, logs the statements of one placement, and checks
// them against place_order.sql.
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
	if _, err := io.WriteString(out, log); err != nil {
		return err
	}
	if err := checkScript(log); err != nil {
		return err
	}
	_, err = io.WriteString(out, "place_order.sql sends the same statements\n")
	return err
}

// workload is what the service's clients do in a round.
type workload struct {
	name    string
	unit    string
	clients int
	// phase builds the closed loop; orders, when not nil, collects the
	// orders it placed.
	phase func(c *client, name string, d time.Duration, round int, orders *placements) phase
	// placements says every successful call placed one order, which the
	// round checks against what the database gained.
	placements bool
}

// placing is POST /v1/orders by clients clients, tenant and order number
// chosen by pick from the client and the call's number.
func (b *bench) placing(name string, clients int, pick func(c *client, w int, seq int64) (int, int64)) workload {
	return workload{name: name, unit: "order", clients: clients, placements: true,
		phase: func(c *client, name string, d time.Duration, _ int, orders *placements) phase {
			return phase{name: name, clients: clients, duration: d, limit: b.o.limit,
				do: func(ctx context.Context, w *worker, seq int64) error {
					ti, round := pick(c, w.id, seq)
					return c.place(ctx, ti, round, orders)
				}}
		}}
}

// writing is the write mix of writers clients, client w writing to tenant
// tenantOf(w).
func (b *bench) writing(name string, writers int, tenantOf func(w int) int) workload {
	return workload{name: name, unit: "write", clients: writers,
		phase: func(c *client, name string, d time.Duration, round int, _ *placements) phase {
			m := writeMix{c: c, tenantOf: tenantOf, seed: uint64(round)<<8 | uint64(writers)}
			return m.phase(name, writers, d, b.o.limit)
		}}
}

// serviceSide measures wl, each round on a fresh tenantd.
func (b *bench) serviceSide(wl workload, orders *placements) side {
	return side{name: wl.name, unit: wl.unit, round: func(ctx context.Context, d time.Duration, i int) (result, error) {
		return b.serviceRound(ctx, wl, d, i, orders)
	}}
}

// serviceRound serves a fresh tenantd, warms it up (API-key cache, the
// pool's connections and their prepared statements), waits until its
// background work has caught up, runs wl for d, and stops it.
func (b *bench) serviceRound(ctx context.Context, wl workload, d time.Duration, round int, orders *placements) (_ result, err error) {
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
	c := newClient(srv.base, wl.clients, b.pop)
	defer c.close()
	before, err := b.in.tally(ctx)
	if err != nil {
		return result{}, err
	}
	var w result
	if b.o.warmup > 0 {
		w = wl.phase(c, "warm-up", b.o.warmup, round, nil).run(ctx)
		if w.failed > 0 && (wl.placements || w.ok == 0) {
			return result{}, fmt.Errorf("warm-up: %d of %d requests failed, first: %w", w.failed, w.failed+w.ok, w.firstErr)
		}
	}
	// Also the sealing of audit rows pgbench left unsealed.
	if err := b.drain(ctx); err != nil {
		return result{}, fmt.Errorf("after the warm-up: %w", err)
	}
	from, err := b.in.lastPosition(ctx)
	if err != nil {
		return result{}, err
	}
	cpu := sampleCPU(b.pgData)
	r := wl.phase(c, wl.name, d, round, orders).run(ctx)
	// The requests' work is done when the event dispatcher has delivered
	// their events (the billing meters count order.placed) and the audit
	// sealer has linked their entries into the chains: the time that takes
	// after the last response counts as the phase's.
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
	if !wl.placements {
		return r, nil
	}
	after, err := b.in.tally(ctx)
	if err != nil {
		return result{}, err
	}
	if r.failed == 0 && w.failed == 0 {
		if err := checkWrites("the service", before, after, w.ok+r.ok); err != nil {
			return result{}, err
		}
	}
	if !b.shapesChecked && r.ok > 0 {
		// place_order.sql must write the JSON the service writes: compare
		// the first placement of each once.
		b.shapesChecked = true
		svc, err := b.in.shapeOf(ctx, from)
		if err != nil {
			return result{}, err
		}
		if err := b.checkScriptShape(ctx, svc); err != nil {
			return result{}, err
		}
	}
	return r, nil
}

// checkScriptShape runs place_order.sql once, one transaction of each kind
// of order, and compares the JSON it wrote with the service's.
func (b *bench) checkScriptShape(ctx context.Context, svc shape) error {
	from, err := b.in.lastPosition(ctx)
	if err != nil {
		return err
	}
	if _, err := b.pb.run(ctx, b.own, "shape", 1, time.Second, 1); err != nil {
		return err
	}
	scr, err := b.in.shapeOf(ctx, from)
	if err != nil {
		return err
	}
	to, err := b.in.lastPosition(ctx)
	if err != nil {
		return err
	}
	if err := b.in.skipEvents(ctx, from, to); err != nil {
		return err
	}
	return sameShape(svc, scr)
}

// drain waits until tenantd's event dispatcher has delivered every event
// appended so far and its audit sealer has sealed every audit row, for at
// most a minute. Without background work there is neither to wait for.
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
		u, err := b.in.unsealed(ctx)
		if err != nil {
			return err
		}
		if n == 0 && u == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after a minute, the event dispatcher is still %d positions behind and %d audit rows are unsealed", n, u)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// pgbenchRound runs sc with as many connections as the service has
// clients: a warm-up run, then one for d.
func (b *bench) pgbenchRound(ctx context.Context, sc script, name string, clients int, d time.Duration) (result, error) {
	threads := runtime.NumCPU()
	var warm int64
	if b.o.warmup >= time.Second {
		w, err := b.pb.run(ctx, sc, "warm-up", clients, b.o.warmup, threads)
		if err != nil {
			return result{}, err
		}
		if w.failed > 0 {
			return result{}, fmt.Errorf("warm-up: %w", w.firstErr)
		}
		warm = w.ok
	}
	r, err := b.pb.run(ctx, sc, name, clients, d, threads)
	r.warm = warm
	return r, err
}

// ownSide runs place_order.sql on tenantd's database, checks it wrote a
// placement for each transaction, and then moves the dispatcher's
// subscribers past the events it appended (they are not the service's
// work).
func (b *bench) ownSide(clients int) side {
	return side{name: "pgbench place_order.sql", unit: "order", round: func(ctx context.Context, d time.Duration, _ int) (result, error) {
		before, err := b.in.tally(ctx)
		if err != nil {
			return result{}, err
		}
		from, err := b.in.lastPosition(ctx)
		if err != nil {
			return result{}, err
		}
		r, err := b.pgbenchRound(ctx, b.own, "pgbench place_order.sql", clients, d)
		if err != nil {
			return result{}, err
		}
		after, err := b.in.tally(ctx)
		if err != nil {
			return result{}, err
		}
		if r.failed == 0 {
			if err := checkWrites("pgbench", before, after, r.warm+r.ok); err != nil {
				return result{}, err
			}
		}
		to, err := b.in.lastPosition(ctx)
		if err != nil {
			return result{}, err
		}
		return r, b.in.skipEvents(ctx, from, to)
	}}
}

// pgrefSide runs pgref_order.sql on the pgref database as role app and
// checks it placed an order for each transaction.
func (b *bench) pgrefSide(clients int) side {
	return side{name: "pgbench pgref_order.sql", unit: "order", round: func(ctx context.Context, d time.Duration, _ int) (result, error) {
		before, err := b.ref.orders(ctx)
		if err != nil {
			return result{}, err
		}
		r, err := b.pgbenchRound(ctx, b.ref.script, "pgbench pgref_order.sql", clients, d)
		if err != nil {
			return result{}, err
		}
		after, err := b.ref.orders(ctx)
		if err != nil {
			return result{}, err
		}
		if r.failed == 0 && after-before != r.warm+r.ok {
			return result{}, fmt.Errorf("pgbench reported %d pgref placements but wrote %d orders", r.warm+r.ok, after-before)
		}
		return r, nil
	}}
}

// getPhase serves a fresh tenantd and reads the placed orders back, in
// turn, after a warm-up.
func (b *bench) getPhase(ctx context.Context, clients int, orders []placed) (_ result, err error) {
	srv, err := startServer(ctx, b.db, b.o.logLevel, b.o.background, b.log)
	if err != nil {
		return result{}, err
	}
	defer func() { err = errors.Join(err, srv.stop()) }()
	c := newClient(srv.base, clients, b.pop)
	defer c.close()
	get := func(ctx context.Context, _ *worker, seq int64) error { return c.get(ctx, seq, orders) }
	w := phase{name: "warm-up", clients: clients, duration: b.o.warmup, limit: b.o.limit, do: get}.run(ctx)
	if w.failed > 0 {
		return result{}, fmt.Errorf("warm-up: %d of %d requests failed, first: %w", w.failed, w.failed+w.ok, w.firstErr)
	}
	if err := b.drain(ctx); err != nil {
		return result{}, err
	}
	cpu := sampleCPU(b.pgData)
	r := phase{name: "service GET /v1/orders/{id}", clients: clients, duration: b.o.getDuration, limit: b.o.limit,
		do: get}.run(ctx)
	r.cpu = sampleCPU(b.pgData).since(cpu)
	return r, ctx.Err()
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
