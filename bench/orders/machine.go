package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// machine describes where the run happened, for the report.
type machine struct {
	cpu string
}

// readMachine reads the CPU model from /proc/cpuinfo, when there is one.
func readMachine() machine {
	m := machine{cpu: "unknown CPU"}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			m.cpu = strings.TrimSpace(v)
			break
		}
	}
	return m
}

// loadAverage is the 1-, 5- and 15-minute load average, which says whether
// other work shared the machine.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "unknown"
	}
	return strings.Join(fs[:3], " ")
}

// clockTick is Linux's USER_HZ, the unit of /proc/<pid>/stat times.
const clockTick = 10 * time.Millisecond

// cpuSample is CPU time (user and system) used so far by this process, by
// the PostgreSQL cluster (the postmaster, its live children: backends,
// background workers, and its reaped ones) and by the whole machine.
type cpuSample struct {
	at                   time.Time
	self, postgres, busy time.Duration
	ok                   bool
}

// sampleCPU reads the CPU times; ok is false when the cluster's processes
// cannot be read (not Linux, no postmaster.pid).
func sampleCPU(pgData string) cpuSample {
	s := cpuSample{at: time.Now(), busy: machineBusy()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile(filepath.Join(pgData, "postmaster.pid"))
	if err != nil {
		return s
	}
	first, _, _ := strings.Cut(string(b), "\n")
	postmaster, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return s
	}
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return s
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // ended meanwhile
		}
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state ppid … utime stime cutime cstime.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		ticks := 0
		switch {
		case number(filepath.Base(filepath.Dir(p))) == postmaster:
			ticks = number(f[11]) + number(f[12]) + number(f[13]) + number(f[14])
			s.ok = true
		case number(f[1]) == postmaster:
			ticks = number(f[11]) + number(f[12])
		}
		s.postgres += time.Duration(ticks) * clockTick
	}
	return s
}

// machineBusy is the CPU time all CPUs have spent on anything but idling,
// from the first line of /proc/stat: user, nice, system, (idle, iowait,)
// irq, softirq, steal.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	ticks := number(f[1]) + number(f[2]) + number(f[3]) + number(f[6]) + number(f[7]) + number(f[8])
	return time.Duration(ticks) * clockTick
}

// cpuUse is the CPU time a phase cost.
type cpuUse struct {
	app, postgres time.Duration // app: this process, or pgbench
	busy, wall    time.Duration // the whole machine's CPU time, and the time that passed
	ok            bool
}

func (s cpuSample) since(before cpuSample) cpuUse {
	return cpuUse{app: s.self - before.self, postgres: s.postgres - before.postgres,
		busy: s.busy - before.busy, wall: s.at.Sub(before.at), ok: s.ok && before.ok}
}

// others is the share of the machine's CPUs that other processes used
// meanwhile: well above zero means the phase shared the machine.
func (u cpuUse) others() string {
	if !u.ok || u.wall <= 0 || u.busy == 0 {
		return "?"
	}
	share := float64(u.busy-u.app-u.postgres) / (float64(u.wall) * float64(runtime.NumCPU()))
	return strconv.FormatFloat(100*max(share, 0), 'f', 0, 64) + "%"
}

// number parses a field of /proc, which is a number or, if the kernel's
// format changed, counts as 0.
func number(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}
