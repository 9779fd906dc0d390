package main

import (
	"context"
	"maps"
	"math"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// phase is one closed loop: clients goroutines each send a request (or a
// short sequence of them), wait for the answer and send the next, until
// duration has passed or limit calls have been made, whichever comes
// first.
type phase struct {
	name     string
	clients  int
	duration time.Duration
	limit    int64
	// do makes call seq as client w and reports what went wrong, if
	// anything. Unless selfTimed, the phase times the whole call as one
	// request; a selfTimed do records each of its requests with w.record.
	do        func(ctx context.Context, w *worker, seq int64) error
	selfTimed bool
}

// worker is one client goroutine of a phase and what it measured.
type worker struct {
	id       int
	lats     []time.Duration
	statuses map[int]int64
	failed   int64
	firstErr error
}

// record notes one request: its time when it succeeded, its HTTP status
// when it was answered (0: it was not), and err when it failed.
func (w *worker) record(d time.Duration, status int, err error) {
	if status != 0 {
		w.statuses[status]++
	}
	if err != nil {
		w.failed++
		if w.firstErr == nil {
			w.firstErr = err
		}
		return
	}
	w.lats = append(w.lats, d)
}

// result is what a phase measured.
type result struct {
	name     string
	ok       int64
	failed   int64
	firstErr error
	elapsed  time.Duration
	// drain is the part of elapsed after the last response, until the
	// event dispatcher had delivered the phase's events and the audit
	// sealer had sealed its entries.
	drain time.Duration
	// latencies of the successful requests, sorted.
	latencies []time.Duration
	// statuses counts the answers by HTTP status, when the phase recorded
	// them (the write mix).
	statuses map[int]int64
	// warm is the successful requests of the warm-up before the phase.
	warm int64
	// cpu is the CPU time the phase cost the client and server process (or
	// pgbench) and PostgreSQL.
	cpu cpuUse
	// detail is what else the tool reported: pgbench's per-statement
	// latencies.
	detail string
}

// run runs the phase. The client goroutines carry the pprof label
// side=client, so a CPU profile of this process separates the load
// generator from the server.
func (p phase) run(ctx context.Context) result {
	var (
		next    atomic.Int64
		workers = make([]*worker, p.clients)
		wg      sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(p.duration)
	for c := range p.clients {
		w := &worker{id: c, lats: make([]time.Duration, 0, 4096), statuses: map[int]int64{}}
		workers[c] = w
		wg.Go(func() {
			pprof.Do(ctx, pprof.Labels("side", "client"), func(ctx context.Context) {
				for ctx.Err() == nil {
					seq := next.Add(1) - 1
					if seq >= p.limit || time.Now().After(deadline) {
						break
					}
					t0 := time.Now()
					err := p.do(ctx, w, seq)
					if !p.selfTimed {
						w.record(time.Since(t0), 0, err)
					}
				}
			})
		})
	}
	wg.Wait()
	r := result{name: p.name, elapsed: time.Since(start), statuses: map[int]int64{}}
	lats := make([][]time.Duration, 0, len(workers))
	for _, w := range workers {
		lats = append(lats, w.lats)
		r.failed += w.failed
		if r.firstErr == nil {
			r.firstErr = w.firstErr
		}
		for s, n := range w.statuses {
			r.statuses[s] += n
		}
	}
	r.latencies = slices.Concat(lats...)
	slices.Sort(r.latencies)
	r.ok = int64(len(r.latencies))
	return r
}

// merge adds up the rounds of one side.
func merge(rs []result) result {
	if len(rs) == 0 {
		return result{}
	}
	m := result{name: rs[0].name, cpu: cpuUse{ok: true}, statuses: map[int]int64{}}
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
		for s, n := range r.statuses {
			m.statuses[s] += n
		}
		m.detail = r.detail
		lats = append(lats, r.latencies)
	}
	m.latencies = slices.Concat(lats...)
	slices.Sort(m.latencies)
	return m
}

// perSecond is the throughput of successful requests.
func (r result) perSecond() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// servingPerSecond is the throughput while responding, without the drain.
func (r result) servingPerSecond() float64 {
	return float64(r.ok) / (r.elapsed - r.drain).Seconds()
}

// percentile returns the q-quantile (0 < q ≤ 1) of the latencies, by the
// nearest-rank method.
func (r result) percentile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.latencies)))) - 1
	return r.latencies[max(i, 0)]
}

// cpuPer formats CPU time d per successful request, in milliseconds.
func (r result) cpuPer(d time.Duration) string {
	if !r.cpu.ok || r.ok == 0 {
		return "?"
	}
	return ms(d / time.Duration(r.ok))
}

// cpuTotalPer is the CPU time of all processes per successful request.
func (r result) cpuTotalPer() time.Duration {
	if r.ok == 0 {
		return 0
	}
	return (r.cpu.app + r.cpu.postgres) / time.Duration(r.ok)
}

func (r result) mean() time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range r.latencies {
		sum += d
	}
	return sum / time.Duration(len(r.latencies))
}

// statusSummary lists the answers by status, e.g. "201×812 204×40 409×3".
func (r result) statusSummary() string {
	var s []byte
	for _, code := range slices.Sorted(maps.Keys(r.statuses)) {
		if len(s) > 0 {
			s = append(s, ' ')
		}
		s = strconv.AppendInt(s, int64(code), 10)
		s = append(s, "×"...)
		s = strconv.AppendInt(s, r.statuses[code], 10)
	}
	return string(s)
}

// secs formats a duration in seconds.
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64)
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
}
