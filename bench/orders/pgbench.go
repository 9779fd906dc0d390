package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// placeOrderSQL is the pgbench script: the statements of one order
// placement, as the service sends them.
//
//go:embed place_order.sql
var placeOrderSQL []byte

// pgbench runs pgbench scripts against the throw-away cluster.
type pgbench struct {
	bin    string
	dir    string // scripts and per-transaction logs
	pgData string // the cluster's data directory, to measure its CPU time
	// statements asks pgbench for the latency of each statement (-r),
	// which costs it a little time.
	statements bool
}

// script is a pgbench script and where it runs.
type script struct {
	file    string // its name in pgbench's directory
	sql     []byte
	url     string   // the database and role it runs as
	defines []string // -D name=value
}

// findPgbench finds pgbench on PATH or in Debian's
// /usr/lib/postgresql/<version>/bin, newest version first.
func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	found, err := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if err != nil {
		return "", err
	}
	version := func(p string) int {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		if err != nil {
			return 0
		}
		return v
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	if len(found) == 0 {
		return "", fmt.Errorf("pgbench not found on PATH or in /usr/lib/postgresql/*/bin; install it (Debian: apt-get install -y postgresql, which brings pgbench)")
	}
	return found[0], nil
}

// run runs sc with clients connections for duration (whole seconds,
// pgbench's unit) and reads throughput and latencies from its output and
// its per-transaction log.
func (b pgbench) run(ctx context.Context, sc script, name string, clients int, duration time.Duration, threads int) (result, error) {
	path := filepath.Join(b.dir, sc.file)
	if err := os.WriteFile(path, sc.sql, 0o644); err != nil {
		return result{}, err
	}
	logDir, err := os.MkdirTemp(b.dir, "log-")
	if err != nil {
		return result{}, err
	}
	secs := max(1, int(duration.Round(time.Second)/time.Second))
	args := []string{
		"-n",             // no VACUUM of pgbench's own tables, which do not exist
		"-M", "prepared", // as pgx caches the statements of the service
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(threads, clients)),
		"-T", strconv.Itoa(secs),
		"-f", path,
		"-l", "--log-prefix", filepath.Join(logDir, "tx"),
	}
	for _, d := range sc.defines {
		args = append(args, "-D", d)
	}
	if b.statements {
		args = append(args, "-r")
	}
	args = append(args, sc.url)
	// pgbench ends by itself after secs; the margin covers connecting and
	// the last transactions.
	runCtx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, b.bin, args...)
	cmd.Dir = b.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	before := sampleCPU(b.pgData)
	err = cmd.Run()
	after := sampleCPU(b.pgData)
	if err != nil {
		return result{}, fmt.Errorf("pgbench: %w\n%s%s", err, stdout.Bytes(), tail(stderr.Bytes(), 2000))
	}
	r := result{name: name, cpu: after.since(before)}
	r.cpu.app = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	out := stdout.String()
	processed, err := field(out, `number of transactions actually processed: (\d+)`)
	if err != nil {
		return result{}, err
	}
	tps, err := field(out, `tps = ([0-9.]+) \(without initial connection time\)`)
	if err != nil {
		return result{}, err
	}
	if failed, err := field(out, `number of failed transactions: (\d+)`); err == nil && failed > 0 {
		r.failed = int64(failed)
		r.firstErr = fmt.Errorf("pgbench: %d failed transactions:\n%s", r.failed, tail(stderr.Bytes(), 1000))
	}
	if stderr.Len() > 0 && r.firstErr == nil && bytes.Contains(stderr.Bytes(), []byte("aborted")) {
		r.firstErr = fmt.Errorf("pgbench: %s", tail(stderr.Bytes(), 1000))
		r.failed++
	}
	if r.latencies, err = readTxLog(logDir); err != nil {
		return result{}, err
	}
	if err := os.RemoveAll(logDir); err != nil {
		return result{}, err
	}
	if _, perStatement, ok := strings.Cut(out, "statement latencies in milliseconds"); ok {
		r.detail = "statement latencies in milliseconds" + perStatement
	}
	r.ok = int64(processed)
	// tps excludes connecting, as the service's figure excludes its
	// already open pool; elapsed is derived from it.
	r.elapsed = time.Duration(float64(r.ok) / tps * float64(time.Second))
	return r, nil
}

// field reads the first number the pattern captures from pgbench's output.
func field(out, pattern string) (float64, error) {
	m := regexp.MustCompile(pattern).FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench output lacks %q:\n%s", pattern, out)
	}
	return strconv.ParseFloat(m[1], 64)
}

// readTxLog reads the latencies from pgbench's per-transaction logs: the
// third field of each line is the transaction's time in microseconds.
func readTxLog(dir string) ([]time.Duration, error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx.*"))
	if err != nil {
		return nil, err
	}
	var lats []time.Duration
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fs[2], 10, 64)
			if err != nil {
				continue // "failed" or "skipped" instead of a time
			}
			lats = append(lats, time.Duration(us)*time.Microsecond)
		}
		err = sc.Err()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
	}
	slices.Sort(lats)
	return lats, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
