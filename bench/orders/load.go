package main

import (
	"context"
	"math"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// phase is one closed loop: clients goroutines each send a request, wait
// for its answer and send the next, until duration has passed or limit
// requests have been sent, whichever comes first.
type phase struct {
	name     string
	clients  int
	duration time.Duration
	limit    int64
	// do sends request seq and reports what went wrong, if anything.
	do func(ctx context.Context, seq int64) error
}

// result is what a phase measured.
type result struct {
	name     string
	ok       int64
	failed   int64
	firstErr error
	elapsed  time.Duration
	// drain is the part of elapsed after the last response, until the
	// event dispatcher had delivered the phase's events.
	drain time.Duration
	// latencies of the successful requests, sorted.
	latencies []time.Duration
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
		next     atomic.Int64
		failed   atomic.Int64
		mu       sync.Mutex
		firstErr error
		lats     = make([][]time.Duration, p.clients)
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(p.duration)
	for c := range p.clients {
		wg.Go(func() {
			pprof.Do(ctx, pprof.Labels("side", "client"), func(ctx context.Context) {
				own := make([]time.Duration, 0, 4096)
				for ctx.Err() == nil {
					seq := next.Add(1) - 1
					if seq >= p.limit || time.Now().After(deadline) {
						break
					}
					t0 := time.Now()
					err := p.do(ctx, seq)
					d := time.Since(t0)
					if err != nil {
						if failed.Add(1) == 1 {
							mu.Lock()
							firstErr = err
							mu.Unlock()
						}
						continue
					}
					own = append(own, d)
				}
				lats[c] = own
			})
		})
	}
	wg.Wait()
	r := result{name: p.name, failed: failed.Load(), firstErr: firstErr, elapsed: time.Since(start)}
	r.latencies = slices.Concat(lats...)
	slices.Sort(r.latencies)
	r.ok = int64(len(r.latencies))
	return r
}

// perSecond is the throughput of successful requests.
func (r result) perSecond() float64 { return float64(r.ok) / r.elapsed.Seconds() }

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

// secs formats a duration in seconds.
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64)
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
}
