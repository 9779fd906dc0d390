package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// side is one thing a scenario measures: a round of it runs for d after
// its own warm-up.
type side struct {
	name  string
	unit  string // what a request is: "order", "write"
	round func(ctx context.Context, d time.Duration, i int) (result, error)
}

// scenario is sides measured in alternating rounds (each round runs every
// side once, in order), so that other work on the machine weighs on all of
// them alike. sides[0] is the one the targets are about; the others are
// its baselines.
type scenario struct {
	name  string
	sides []side
	// targets judges the merged results (in the order of sides).
	targets func(rs []result) []verdict
}

// verdict is a target and whether the run met it.
type verdict struct {
	target, measured string
	met              bool
}

// outcome is what a scenario measured.
type outcome struct {
	scenario scenario
	merged   []result
	rounds   [][]float64 // per round, each side's throughput
	loadAvg  [2]string   // before and after
	verdicts []verdict
}

// runScenario runs the rounds of sc and prints each round as it ends.
func (b *bench) runScenario(ctx context.Context, sc scenario, out io.Writer) (outcome, error) {
	oc := outcome{scenario: sc, loadAvg: [2]string{loadAverage(), ""}}
	perRound := b.o.duration / time.Duration(b.o.rounds)
	all := make([][]result, len(sc.sides))
	fmt.Fprintf(out, "\n== %s: %d rounds of %s per side (load average %s)\n", sc.name, b.o.rounds, perRound, oc.loadAvg[0])
	for i := range b.o.rounds {
		var line []string
		rates := make([]float64, len(sc.sides))
		for j, s := range sc.sides {
			r, err := s.round(ctx, perRound, i)
			if err != nil {
				return outcome{}, fmt.Errorf("%s, round %d, %s: %w", sc.name, i+1, s.name, err)
			}
			all[j] = append(all[j], r)
			rates[j] = r.perSecond()
			line = append(line, fmt.Sprintf("%s %.1f/s p99 %s ms (others %s)", s.name, r.perSecond(), ms(r.percentile(0.99)), r.cpu.others()))
		}
		oc.rounds = append(oc.rounds, rates)
		var ratios []string
		for j := 1; j < len(rates); j++ {
			ratios = append(ratios, fmt.Sprintf("%.2f", rates[0]/rates[j]))
		}
		fmt.Fprintf(out, "round %d/%d: %s; ratio %s\n", i+1, b.o.rounds, strings.Join(line, ", "), strings.Join(ratios, ", "))
	}
	for _, rs := range all {
		oc.merged = append(oc.merged, merge(rs))
	}
	oc.loadAvg[1] = loadAverage()
	if sc.targets != nil {
		oc.verdicts = sc.targets(oc.merged)
	}
	return oc, nil
}

// ratioRange is the lowest and highest ratio of side 0 to side j over the
// rounds.
func (oc outcome) ratioRange(j int) (lo, hi float64) {
	for i, r := range oc.rounds {
		x := r[0] / r[j]
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

// report prints a scenario's merged results and the ratios of its first
// side to the others. CPU columns are milliseconds of CPU per request:
// "app" is this process (tenantd and the load generator) for the service
// and the pgbench process for pgbench; "pg" is the PostgreSQL cluster;
// "all" is both. "others" is the share of the machine's CPU that other
// processes took meanwhile.
func (oc outcome) report(out io.Writer) {
	fmt.Fprintf(out, "\n%s (load average %s → %s)\n\n", oc.scenario.name, oc.loadAvg[0], oc.loadAvg[1])
	fmt.Fprintf(out, "%-34s %8s %6s %8s %8s %7s %7s %7s %7s %7s %7s %7s %6s\n",
		"", "requests", "failed", "per s", "serving", "mean ms", "p50 ms", "p95 ms", "p99 ms", "app CPU", "pg CPU", "all CPU", "others")
	for _, r := range oc.merged {
		serving := "—"
		if r.drain > 0 {
			serving = fmt.Sprintf("%.1f", r.servingPerSecond())
		}
		fmt.Fprintf(out, "%-34s %8d %6d %8.1f %8s %7s %7s %7s %7s %7s %7s %7s %6s\n", r.name, r.ok, r.failed, r.perSecond(), serving,
			ms(r.mean()), ms(r.percentile(0.50)), ms(r.percentile(0.95)), ms(r.percentile(0.99)),
			r.cpuPer(r.cpu.app), r.cpuPer(r.cpu.postgres), r.cpuPer(r.cpu.app+r.cpu.postgres), r.cpu.others())
		if len(r.statuses) > 0 {
			fmt.Fprintf(out, "%-34s answers: %s\n", "", r.statusSummary())
		}
	}
	first := oc.merged[0]
	if first.drain > 0 {
		fmt.Fprintf(out, "(the service's time counts %s s after its last responses of the rounds (first side), until the event\n"+
			" dispatcher had delivered and the audit sealer had sealed what they wrote; \"serving\" leaves that out)\n", secs(first.drain))
	}
	fmt.Fprintln(out)
	for j := 1; j < len(oc.merged); j++ {
		r := oc.merged[j]
		lo, hi := oc.ratioRange(j)
		cpu := "?"
		if first.cpu.ok && r.cpu.ok && first.ok > 0 && r.ok > 0 {
			cpu = fmt.Sprintf("%.2f×", float64(first.cpuTotalPer())/float64(r.cpuTotalPer()))
		}
		fmt.Fprintf(out, "%s / %s: throughput %.2f (rounds %.2f–%.2f; serving %.2f), CPU per %s %s\n",
			first.name, r.name, first.perSecond()/r.perSecond(), lo, hi, first.servingPerSecond()/r.perSecond(),
			oc.scenario.sides[0].unit, cpu)
	}
	for _, v := range oc.verdicts {
		fmt.Fprintf(out, "target %s: %s, %s\n", v.target, v.measured, metOrNot(v.met))
	}
	if d := first.detail; d != "" {
		fmt.Fprintf(out, "\n%s, last round: %s", first.name, d)
	}
	for _, r := range oc.merged[1:] {
		if r.detail != "" {
			fmt.Fprintf(out, "\n%s, last round: %s", r.name, r.detail)
		}
	}
}

func metOrNot(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// Targets (docs/performance.md §4).
const (
	placeTargetClients = 8
	placeTargetRatio   = 0.5 // of pgref's throughput
	placeTargetP99     = 50 * time.Millisecond
	hotTargetRatio     = 0.8 // one hot tenant against the same clients spread
	writesTarget       = 410 // writes per second of 16 writers on one tenant
)

// scenarios builds the scenarios the flags select, in the order given.
func (b *bench) scenarios() ([]scenario, error) {
	var out []scenario
	for _, name := range b.o.scenarios {
		switch name {
		case "place":
			for _, n := range b.o.clients {
				out = append(out, b.placeScenario(n))
			}
		case "hot":
			out = append(out, b.hotScenario(b.o.hotClients))
		case "writes":
			out = append(out, b.writesScenario(b.o.writers))
		default:
			return nil, fmt.Errorf("unknown scenario %q (place, hot, writes)", name)
		}
	}
	return out, nil
}

// placeScenario is POST /v1/orders by clients clients over all tenants in
// turn, against place_order.sql and pgref_order.sql with as many
// connections.
func (b *bench) placeScenario(clients int) scenario {
	svc := b.placing("service POST /v1/orders", clients, func(c *client, _ int, seq int64) (int, int64) { return c.spread(seq) })
	sc := scenario{
		name:  fmt.Sprintf("place, %d clients over %d tenants", clients, b.o.tenants),
		sides: []side{b.serviceSide(svc, &b.orders), b.ownSide(clients), b.pgrefSide(clients)},
	}
	if clients == placeTargetClients {
		sc.targets = func(rs []result) []verdict {
			ratio := rs[0].perSecond() / rs[2].perSecond()
			p99 := rs[0].percentile(0.99)
			return []verdict{
				{fmt.Sprintf("service ≥ %.2f× pgref throughput at %d clients", placeTargetRatio, clients),
					fmt.Sprintf("%.2f×", ratio), ratio >= placeTargetRatio},
				{fmt.Sprintf("service p99 < %v at %d clients", placeTargetP99, clients),
					ms(p99) + " ms", p99 < placeTargetP99},
			}
		}
	}
	return sc
}

// hotScenario is clients clients placing orders for one tenant against the
// same number each placing for a tenant of its own.
func (b *bench) hotScenario(clients int) scenario {
	hot := b.placing(fmt.Sprintf("service, 1 tenant × %d clients", clients), clients,
		func(_ *client, _ int, seq int64) (int, int64) { return 0, seq })
	spread := b.placing(fmt.Sprintf("service, %d tenants × 1 client", clients), clients,
		func(_ *client, w int, seq int64) (int, int64) { return w, seq })
	return scenario{
		name:  fmt.Sprintf("hot tenant, %d clients placing orders", clients),
		sides: []side{b.serviceSide(hot, nil), b.serviceSide(spread, nil)},
		targets: func(rs []result) []verdict {
			ratio := rs[0].perSecond() / rs[1].perSecond()
			return []verdict{{fmt.Sprintf("one hot tenant ≥ %.2f× the same clients on %d tenants", hotTargetRatio, clients),
				fmt.Sprintf("%.2f×", ratio), ratio >= hotTargetRatio}}
		},
	}
}

// writesScenario is the write mix of writers clients on one tenant against
// the same clients each writing to a tenant of its own.
func (b *bench) writesScenario(writers int) scenario {
	hot := b.writing(fmt.Sprintf("write mix, 1 tenant × %d writers", writers), writers, func(int) int { return 0 })
	spread := b.writing(fmt.Sprintf("write mix, %d tenants × 1 writer", writers), writers, func(w int) int { return w })
	return scenario{
		name:  fmt.Sprintf("hot tenant, %d writers of the mixed write load", writers),
		sides: []side{b.serviceSide(hot, nil), b.serviceSide(spread, nil)},
		targets: func(rs []result) []verdict {
			return []verdict{{fmt.Sprintf("≥ %d writes/s on one tenant", writesTarget),
				fmt.Sprintf("%.1f/s (while serving %.1f/s), %d failed", rs[0].perSecond(), rs[0].servingPerSecond(), rs[0].failed),
				rs[0].perSecond() >= writesTarget && rs[0].failed == 0}}
		},
	}
}
