package walkthrough

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// root is the repository, seen from this package's directory (go test runs
// a package's tests there).
const root = "../.."

const (
	// commandTimeout bounds one command of a walk-through.
	commandTimeout = 30 * time.Second
	// eventuallyFor is how long a "# eventually" command is retried.
	eventuallyFor = 15 * time.Second
)

// TestWalkthroughs replays the README's console blocks and every
// docs/walkthrough/*.md against one real `tenantd dev`: the pages in the
// order docs/walkthrough/README.md links them, then any other page in name
// order, each in a subtest of its own. Commands run with bash in a fresh
// directory holding bin/tenantd, with BASE, KEY and OP (and the database
// and Redis URLs for the CLI) exported as the pages ask the reader to, and
// every command must exit 0 and print what the page shows.
func TestWalkthroughs(t *testing.T) {
	pages, err := pagesInOrder()
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the walk-throughs need %s: install it (CI installs what the tests need)", tool)
		}
	}
	srv := startDev(t)
	for _, page := range pages {
		name, _ := filepath.Rel(root, page)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(page)
			if err != nil {
				t.Fatal(err)
			}
			cmds, err := Parse(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			sh := newShell(t, srv)
			for _, c := range cmds {
				sh.check(t, name, c)
			}
		})
	}
}

// indexLink is a link from docs/walkthrough/README.md to a page beside it.
var indexLink = regexp.MustCompile(`\]\(([a-z0-9-]+\.md)\)`)

// pagesInOrder lists the README and the walk-through pages in the order
// they are replayed.
func pagesInOrder() ([]string, error) {
	dir := filepath.Join(root, "docs", "walkthrough")
	files, err := filepath.Glob(filepath.Join(dir, "*.md"))
	if err != nil {
		return nil, err
	}
	index, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		return nil, fmt.Errorf("the walk-throughs' index: %w", err)
	}
	rank := map[string]int{}
	for _, m := range indexLink.FindAllStringSubmatch(string(index), -1) {
		if _, seen := rank[m[1]]; !seen {
			rank[m[1]] = len(rank)
		}
	}
	var pages []string
	for _, f := range files {
		if filepath.Base(f) != "README.md" {
			pages = append(pages, f)
		}
	}
	if len(pages) == 0 {
		return nil, errors.New("no docs/walkthrough/*.md: nothing to check")
	}
	sort.SliceStable(pages, func(i, j int) bool {
		ri, iok := rank[filepath.Base(pages[i])]
		rj, jok := rank[filepath.Base(pages[j])]
		switch {
		case iok && jok:
			return ri < rj
		case iok != jok:
			return iok
		}
		return pages[i] < pages[j]
	})
	return append([]string{filepath.Join(root, "README.md")}, pages...), nil
}

// devServer is a running `tenantd dev` and what the walk-throughs need to
// reach it.
type devServer struct {
	bin  string            // the binary built from the repository
	vars map[string]string // exported to every command
}

// runs numbers the servers of this process, so that -count gets a fresh
// database each time.
var runs atomic.Int32

// startDev builds tenantd and runs `tenantd dev` on a database of its own
// in the package's PostgreSQL and Redis (as `make run` does with
// DATABASE_URL set), until the test ends.
func startDev(t *testing.T) *devServer {
	t.Helper()
	env := testenv.Get(t)
	bin := apptest.BuildBinary(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	name := fmt.Sprintf("%s_wt%d", env.DBName, runs.Add(1))
	dbase, err := devenv.Provision(ctx, env.AdminURL, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := devenv.Drop(ctx, env.AdminURL, name); err != nil {
			t.Errorf("drop the walk-throughs' database: %v", err)
		}
	})

	addr := apptest.FreeAddr(t)
	vars := map[string]string{
		"BASE":                 "http://" + addr,
		"OP":                   "pk_walkthrough_" + fmt.Sprint(time.Now().UnixNano()),
		"DATABASE_URL":         dbase.AppURL,
		"MIGRATE_DATABASE_URL": dbase.OwnerURL,
		"WORKER_DATABASE_URL":  dbase.WorkerURL,
		"REDIS_URL":            env.RedisURL,
	}
	cmd := exec.Command(bin, "dev")
	cmd.Env = append(cleanEnv(),
		"HTTP_ADDR="+addr,
		"DEV_IDP_ADDR="+apptest.FreeAddr(t), // the dev identity provider, where tenantd dev has one
		"PLATFORM_API_KEY="+vars["OP"],
		"DATABASE_URL="+vars["DATABASE_URL"],
		"MIGRATE_DATABASE_URL="+vars["MIGRATE_DATABASE_URL"],
		"WORKER_DATABASE_URL="+vars["WORKER_DATABASE_URL"],
		"REDIS_URL="+vars["REDIS_URL"],
	)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &apptest.SyncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tenantd dev: %v", err)
	}
	exited := make(chan error, 1)
	banner := &apptest.SyncBuffer{}
	go func() {
		// The banner names the demo tenant's key: "export KEY=…" lines
		// (any "export NAME=value" the banner prints is passed on).
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			banner.Write([]byte(sc.Text() + "\n"))
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			return
		}
		select {
		case err := <-exited:
			if err != nil && !t.Failed() {
				t.Errorf("tenantd dev after Ctrl-C: %v\n%s", err, logs.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("tenantd dev did not stop within 30 s of SIGINT")
		}
		if t.Failed() {
			t.Logf("tenantd dev's log:\n%s", tail(logs.String(), 30))
		}
	})

	apptest.WaitReady(t, vars["BASE"], 90*time.Second, exited, func() string { return banner.String() + "\n" + logs.String() })
	// The banner is printed before tenantd serves; give the reader a moment
	// to take it from the pipe.
	for wait := time.Now().Add(5 * time.Second); bannerExports(banner.String())["KEY"] == "" && time.Now().Before(wait); {
		time.Sleep(20 * time.Millisecond)
	}
	for name, value := range bannerExports(banner.String()) {
		if _, ours := vars[name]; !ours {
			vars[name] = value
		}
	}
	if vars["KEY"] == "" {
		t.Fatalf("tenantd dev printed no demo tenant key (export KEY=…):\n%s", banner.String())
	}
	return &devServer{bin: bin, vars: vars}
}

var (
	exportLine = regexp.MustCompile(`(?m)^\s*export ([A-Z][A-Z0-9_]*)=([^\s$]+)\s*$`)
	issuerLine = regexp.MustCompile(`(?m)^\s*dev identity provider \(issuer\): (\S+)\s*$`)
)

// bannerExports returns the "export NAME=value" lines of tenantd dev's
// banner, and ISSUER, the issuer of its identity provider when it runs one.
func bannerExports(banner string) map[string]string {
	out := map[string]string{}
	for _, m := range exportLine.FindAllStringSubmatch(banner, -1) {
		out[m[1]] = strings.Trim(m[2], `'"`)
	}
	if m := issuerLine.FindStringSubmatch(banner); m != nil {
		out["ISSUER"] = m[1]
	}
	return out
}

// cleanEnv is this process's environment without tenantd's configuration,
// so a variable set in the shell that runs the tests cannot change what the
// walk-throughs see.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(name, "_URL") || strings.HasPrefix(name, "PLATFORM_") || strings.HasPrefix(name, "OTEL_") ||
			strings.HasPrefix(name, "OIDC_") || name == "HTTP_ADDR" || name == "BASE_DOMAIN" || name == "KEY" ||
			name == "OP" || name == "BASE" || name == "CURSOR_SECRET" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// shell runs one walk-through's commands, each in a new bash that starts
// from the exported variables and the directory the previous one left.
type shell struct {
	dir   string // working directory: holds bin/tenantd
	state string // the exported variables, as `export -p` prints them
	cwd   string // the directory the last command ended in
	env   []string
}

func newShell(t *testing.T, srv *devServer) *shell {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(srv.bin, filepath.Join(dir, "bin", "tenantd")); err != nil {
		t.Fatal(err)
	}
	meta := t.TempDir()
	sh := &shell{dir: dir, state: filepath.Join(meta, "state"), cwd: filepath.Join(meta, "cwd"), env: cleanEnv()}
	for name, value := range srv.vars {
		sh.env = append(sh.env, name+"="+value)
	}
	for _, f := range []struct{ path, data string }{{sh.state, ""}, {sh.cwd, dir}} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return sh
}

// script wraps a command so that its exported variables and directory
// carry over to the next one.
const script = `source "$WALK_STATE"
cd "$(cat "$WALK_CWD")" || exit 97
%s
walk_rc=$?
export -p > "$WALK_STATE"
pwd > "$WALK_CWD"
exit $walk_rc
`

// run runs one command and returns its combined output.
func (sh *shell) run(text string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", fmt.Sprintf(script, text))
	cmd.Env = append(sh.env, "WALK_STATE="+sh.state, "WALK_CWD="+sh.cwd)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s", commandTimeout)
	}
	return out.String(), err
}

// check runs the command and fails the test when it exits non-zero or its
// output does not match; a "# eventually" command is retried first.
func (sh *shell) check(t *testing.T, file string, c Command) {
	t.Helper()
	deadline := time.Now().Add(eventuallyFor)
	for {
		out, err := sh.run(c.Text)
		got := Normalize(c.Want, out)
		mismatch := Match(c.Want, got)
		if err == nil && mismatch == nil {
			return
		}
		if c.Eventually && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var why string
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			why = fmt.Sprintf("exit status %d", exit.ExitCode())
		case err != nil:
			why = err.Error()
		default:
			why = mismatch.Error()
		}
		t.Fatalf("%s:%d: %s\n$ %s\n--- want\n%s\n--- got\n%s", file, c.Line, why, c.Text,
			strings.Join(c.Want, "\n"), strings.Join(got, "\n"))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
