package main_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// cliResult is how one run of the binary ended.
type cliResult struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// runCLI runs bin with args in dir, with only the environment vars given
// (and PATH), and waits at most a minute.
func runCLI(t *testing.T, bin, dir string, vars []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, vars...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill() //nolint:errcheck // the test fails anyway
		<-done
		t.Fatalf("tenantd %s still runs after a minute\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), &stdout, &stderr)
	}
	r := cliResult{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run tenantd %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// cliCase is a command line and what its run must show.
type cliCase struct {
	args []string
	want string
}

// runCLICases runs each case in a subtest named by its command line, in a
// new directory that the run must leave empty, with the environment vars,
// and checks the result with check.
func runCLICases(t *testing.T, bin string, vars []string, cases []cliCase, check func(t *testing.T, want string, r cliResult)) {
	t.Helper()
	for _, tt := range cases {
		t.Run(strings.Join(append([]string{"tenantd"}, tt.args...), " "), func(t *testing.T) {
			dir := t.TempDir()
			r := runCLI(t, bin, dir, vars, tt.args...)
			if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
				t.Errorf("working directory after the run: %v %v, want it empty", entries, err)
			}
			check(t, tt.want, r)
		})
	}
}

// TestCLIHelp runs every subcommand with --help (and -h) where running it
// would reach for the database, Redis and the ports: PostgreSQL and Redis
// URLs that nothing answers, and HTTP_ADDR and DEV_IDP_ADDR on a port this
// test holds. Help must exit 0 at once, print the subcommand's usage on
// stdout and nothing on stderr, and leave the working directory empty.
// Unknown flags, unexpected arguments and unknown subcommands exit 2 with
// the usage on stderr.
func TestCLIHelp(t *testing.T) {
	bin := apptest.BuildBinary(t, ".")
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	unreachable := "postgres://tenantd_app:secret@127.0.0.1:1/tenantd?connect_timeout=2"
	vars := []string{"DATABASE_URL=" + unreachable, "WORKER_DATABASE_URL=" + unreachable,
		"MIGRATE_DATABASE_URL=" + unreachable, "REDIS_URL=redis://127.0.0.1:1/0",
		"HTTP_ADDR=" + held.Addr().String(), "DEV_IDP_ADDR=" + held.Addr().String()}

	helps := []cliCase{ // want: the start of stdout
		{nil, "tenantd — multi-tenant SaaS API"},
		{[]string{"help"}, "tenantd — multi-tenant SaaS API"},
		{[]string{"--help"}, "tenantd — multi-tenant SaaS API"},
		{[]string{"help", "dev"}, "Usage: tenantd dev"},
		{[]string{"serve", "--help"}, "Usage: tenantd serve"},
		{[]string{"serve", "-h"}, "Usage: tenantd serve"},
		{[]string{"migrate", "--help"}, "Usage: tenantd migrate up | down [N] | status"},
		{[]string{"migrate", "up", "--help"}, "Usage: tenantd migrate"},
		{[]string{"migrate", "down", "--help"}, "Usage: tenantd migrate"},
		{[]string{"migrate", "status", "-h"}, "Usage: tenantd migrate"},
		{[]string{"dev", "--help"}, "Usage: tenantd dev"},
		{[]string{"dev", "-h"}, "Usage: tenantd dev"},
		{[]string{"billing", "--help"}, "Usage: tenantd billing export"},
		{[]string{"billing", "export", "--help"}, "Usage: tenantd billing export"},
		{[]string{"billing", "export", "--period", "2026-01", "--out", "export.csv", "--help"}, "Usage: tenantd billing export"},
		{[]string{"projections", "--help"}, "Usage: tenantd projections rebuild"},
		{[]string{"projections", "rebuild", "--help"}, "Usage: tenantd projections rebuild"},
		{[]string{"audit", "--help"}, "Usage: tenantd audit verify"},
		{[]string{"audit", "verify", "--help"}, "Usage: tenantd audit verify"},
		{[]string{"healthcheck", "--help"}, "Usage: tenantd healthcheck"},
	}
	runCLICases(t, bin, vars, helps, func(t *testing.T, want string, r cliResult) {
		if r.code != 0 {
			t.Errorf("got exit status %d, want 0\nstderr:\n%s", r.code, r.stderr)
		}
		if !strings.HasPrefix(r.stdout, want) {
			t.Errorf("got stdout starting %q, want %q", firstLine(r.stdout), want)
		}
		if r.stderr != "" {
			t.Errorf("got stderr %q, want nothing", r.stderr)
		}
		// Connecting to 127.0.0.1:1 is refused at once, but a command that
		// started servers or waited for them would take longer.
		if r.took > 10*time.Second {
			t.Errorf("took %s, want help at once", r.took)
		}
	})

	t.Run("no environment", func(t *testing.T) {
		for _, args := range [][]string{{"serve", "--help"}, {"dev", "--help"}, {"projections", "rebuild", "-h"}} {
			if r := runCLI(t, bin, t.TempDir(), nil, args...); r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "Usage:") {
				t.Errorf("tenantd %s without environment: got exit %d, stderr %q, stdout %q; want 0, nothing, the usage",
					strings.Join(args, " "), r.code, r.stderr, firstLine(r.stdout))
			}
		}
	})

	refusals := []cliCase{ // want: in stderr
		{[]string{"serve", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"serve", "now"}, `unexpected argument "now"`},
		{[]string{"dev", "--port", "1"}, "flag provided but not defined: -port"},
		{[]string{"migrate"}, "needs up, down [N] or status"},
		{[]string{"migrate", "sideways"}, `unknown action "sideways"`},
		{[]string{"migrate", "down", "two"}, "N must be a positive integer"},
		{[]string{"migrate", "up", "--all"}, "flag provided but not defined: -all"},
		{[]string{"billing"}, "needs a subcommand: export"},
		{[]string{"billing", "export"}, "--period YYYY-MM is required"},
		{[]string{"billing", "export", "--period", "2026-01", "--format", "xml"}, "--format"},
		{[]string{"billing", "export", "--period", "2026-01", "extra"}, `unexpected argument "extra"`},
		{[]string{"projections"}, "needs a subcommand: rebuild"},
		{[]string{"projections", "rebuild", "--force"}, "flag provided but not defined: -force"},
		{[]string{"audit", "verify", "--max-unsealed-age", "0s"}, "must be positive"},
		{[]string{"audit", "check"}, "needs a subcommand: verify"},
		{[]string{"healthcheck", "--port", "1"}, "flag provided but not defined: -port"},
		{[]string{"help", "nope"}, `unknown subcommand "nope"`},
		{[]string{"nope"}, `unknown subcommand "nope"`},
	}
	runCLICases(t, bin, vars, refusals, func(t *testing.T, want string, r cliResult) {
		if r.code != 2 {
			t.Errorf("got exit status %d, want 2\nstderr:\n%s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "Usage:") && !strings.Contains(r.stderr, "tenantd — ") {
			t.Errorf("got stderr:\n%s\nwant %q and the usage", r.stderr, want)
		}
		if r.stdout != "" {
			t.Errorf("got stdout %q, want nothing", r.stdout)
		}
	})
}

// TestServeBadAddress gives serve an address it cannot listen on: it exits
// 1 naming HTTP_ADDR, and never logs "tenantd serving".
func TestServeBadAddress(t *testing.T) {
	env := testenv.Get(t)
	bin := apptest.BuildBinary(t, ".")
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for _, addr := range []string{"127.0.0.1:99999", "127.0.0.1", held.Addr().String()} {
		t.Run(addr, func(t *testing.T) {
			r := runCLI(t, bin, t.TempDir(), []string{"DATABASE_URL=" + env.AppURL, "WORKER_DATABASE_URL=" + env.WorkerURL,
				"REDIS_URL=" + env.RedisURL, "HTTP_ADDR=" + addr}, "serve")
			if r.code != 1 {
				t.Errorf("got exit status %d, want 1\nstderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "HTTP_ADDR") {
				t.Errorf("got stderr:\n%s\nwant the error to name HTTP_ADDR", r.stderr)
			}
			if strings.Contains(r.stderr, "tenantd serving") {
				t.Errorf("got stderr:\n%s\nwant no \"tenantd serving\"", r.stderr)
			}
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
