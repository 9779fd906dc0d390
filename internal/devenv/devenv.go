// Package devenv starts throw-away PostgreSQL and Redis servers from the
// local binaries, for `tenantd dev` and for tests. Everything it starts lives
// in one temporary directory and is removed by Stop.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"github.com/tenantd/tenantd/internal/wait"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Env is a running pair of throw-away servers.
type Env struct {
	// AdminURL is the PostgreSQL superuser URL of the throw-away cluster.
	AdminURL string
	// RedisURL is the throw-away Redis.
	RedisURL string

	dir       string
	pgPort    int
	redisPort int
	log       *slog.Logger

	mu    sync.Mutex
	pg    *process
	redis *process
}

// process is a started server and a channel closed when it has exited.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func start(cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop signals the process and waits up to 10 s before killing it.
func (p *process) stop(sig syscall.Signal) {
	if p == nil {
		return
	}
	if err := p.cmd.Process.Signal(sig); err == nil {
		select {
		case <-p.done:
			return
		case <-time.After(10 * time.Second):
		}
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		slog.Warn("devenv: could not kill server", "pid", p.cmd.Process.Pid, "err", err)
	}
	<-p.done
}

// Start initialises and starts PostgreSQL and Redis on free loopback ports.
func Start(ctx context.Context, log *slog.Logger) (*Env, error) {
	return startEnv(ctx, log, "tenantd-dev-", (*Env).startPostgres, (*Env).StartRedis)
}

// StartRedisOnly starts just a throw-away Redis, for tests that use a
// PostgreSQL server given by URL but need a Redis of their own.
func StartRedisOnly(ctx context.Context, log *slog.Logger) (*Env, error) {
	return startEnv(ctx, log, "tenantd-redis-", (*Env).StartRedis)
}

// startEnv makes an Env in a new temporary directory named after prefix and
// runs each server's start in turn; on a failure it stops what started.
func startEnv(ctx context.Context, log *slog.Logger, prefix string, servers ...func(*Env, context.Context) error) (*Env, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, fmt.Errorf("devenv: temp dir: %w", err)
	}
	env := &Env{dir: dir, log: log}
	for _, startServer := range servers {
		if err := startServer(env, ctx); err != nil {
			env.Stop()
			return nil, err
		}
	}
	return env, nil
}

// HaveRedisServer reports whether a local redis-server binary exists.
func HaveRedisServer() bool {
	_, err := findBin("redis-server", "/usr/bin/redis-server", "/usr/sbin/redis-server")
	return err == nil
}

// Dir is the directory holding the servers' data and logs.
func (e *Env) Dir() string { return e.dir }

// Stop stops both servers and removes their data.
func (e *Env) Stop() {
	e.mu.Lock()
	pg := e.pg
	e.pg = nil
	e.mu.Unlock()
	pg.stop(syscall.SIGINT) // PostgreSQL's fast shutdown
	e.StopRedis()
	if e.dir != "" {
		if err := os.RemoveAll(e.dir); err != nil {
			e.log.Warn("devenv: could not remove data directory", "dir", e.dir, "err", err)
		}
	}
}

func (e *Env) startPostgres(ctx context.Context) error {
	initdb, err := findPostgresBin("initdb")
	if err != nil {
		return err
	}
	data := filepath.Join(e.dir, "pg")
	if err := os.Mkdir(data, 0o700); err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	cred, err := postgresCredential(e.dir, data)
	if err != nil {
		return err
	}
	init := exec.CommandContext(ctx, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("devenv: initdb failed: %w\n%s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		if lastErr = e.launchPostgres(ctx, data, port, cred); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("devenv: postgres did not start: %w\n%s", lastErr, LogTail(filepath.Join(e.dir, "postgres.log")))
}

// launchPostgres starts the server on data at port and waits until it
// accepts connections.
func (e *Env) launchPostgres(ctx context.Context, data string, port int, cred *syscall.Credential) error {
	postgres, err := findPostgresBin("postgres")
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(e.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	if cred != nil {
		if err := os.Chown(logFile.Name(), int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("devenv: %w", err)
		}
	}
	cmd := exec.Command(postgres, "-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+data,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=128MB")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	proc, err := start(cmd)
	logFile.Close()
	if err != nil {
		return fmt.Errorf("devenv: start postgres: %w", err)
	}
	e.mu.Lock()
	e.pg = proc
	e.mu.Unlock()
	e.pgPort = port
	e.AdminURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := waitPostgres(ctx, e.AdminURL, proc); err != nil {
		proc.stop(syscall.SIGINT)
		e.mu.Lock()
		e.pg = nil
		e.mu.Unlock()
		return err
	}
	e.log.Info("devenv: postgres started", "port", port, "dir", data)
	return nil
}

// RestartPostgres stops PostgreSQL (fast shutdown: clients are
// disconnected) and starts it again on the same data and port, so fault
// tests can see how tenantd rides through it. down is how long it stays
// stopped.
func (e *Env) RestartPostgres(ctx context.Context, down time.Duration) error {
	e.mu.Lock()
	pg := e.pg
	e.pg = nil
	e.mu.Unlock()
	if pg == nil {
		return errors.New("devenv: postgres is not running")
	}
	pg.stop(syscall.SIGINT)
	if !wait.Sleep(ctx, down) {
		return ctx.Err()
	}
	data := filepath.Join(e.dir, "pg")
	cred, err := postgresCredential(e.dir, data)
	if err != nil {
		return err
	}
	return e.launchPostgres(ctx, data, e.pgPort, cred)
}

// StartRedis starts (or restarts, on the same port) the throw-away Redis.
func (e *Env) StartRedis(ctx context.Context) error {
	bin, err := findBin("redis-server", "/usr/bin/redis-server", "/usr/sbin/redis-server")
	if err != nil {
		return err
	}
	if e.redisPort == 0 {
		if e.redisPort, err = freePort(); err != nil {
			return err
		}
	}
	logPath := filepath.Join(e.dir, "redis.log")
	cmd := exec.Command(bin, "--port", strconv.Itoa(e.redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", e.dir, "--logfile", logPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	proc, err := start(cmd)
	if err != nil {
		return fmt.Errorf("devenv: start redis-server: %w", err)
	}
	e.mu.Lock()
	e.redis = proc
	e.mu.Unlock()
	e.RedisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", e.redisPort)
	deadline := time.Now().Add(15 * time.Second)
	client := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", e.redisPort), MaxRetries: -1})
	defer client.Close()
	for {
		err := client.Ping(ctx).Err()
		if err == nil {
			e.log.Info("devenv: redis started", "port", e.redisPort)
			return nil
		}
		select {
		case <-proc.done:
			return fmt.Errorf("devenv: redis-server exited: %v\n%s", proc.err, LogTail(logPath))
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("devenv: redis did not start: %w\n%s", err, LogTail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopRedis stops the throw-away Redis, so tests can see how tenantd copes.
func (e *Env) StopRedis() {
	e.mu.Lock()
	cmd := e.redis
	e.redis = nil
	e.mu.Unlock()
	cmd.stop(syscall.SIGTERM)
}

func waitPostgres(ctx context.Context, url string, proc *process) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, url)
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-proc.done:
			return fmt.Errorf("postgres exited: %v", proc.err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("postgres not reachable: %w", err)
		}
	}
}

// postgresCredential returns the credential to run the PostgreSQL binaries
// with: as root, initdb refuses to run, so they run as the postgres user,
// which then owns the data directory.
func postgresCredential(dirs ...string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("devenv: running as root, PostgreSQL must run as the postgres user, which does not exist (install the postgresql package): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, d := range dirs {
		if err := os.Chown(d, uid, gid); err != nil {
			return nil, fmt.Errorf("devenv: chown %s: %w", d, err)
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// findPostgresBin finds a PostgreSQL server binary on PATH or in Debian's
// /usr/lib/postgresql/<version>/bin, newest version first.
func findPostgresBin(name string) (string, error) {
	candidates, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	sort.Slice(candidates, func(i, j int) bool { return pgVersion(candidates[i]) > pgVersion(candidates[j]) })
	return findBin(name, candidates...)
}

func pgVersion(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return v
}

func findBin(name string, fallbacks ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, p := range fallbacks {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("devenv: %s not found on PATH or in the usual places; install it (Debian: apt-get install -y postgresql redis-server) or set DATABASE_URL and REDIS_URL", name)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("devenv: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LogTail returns the last 2000 bytes of the log file at path, or "" when
// it cannot be read: the end of a server's log, for the error of a server
// that did not start.
func LogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
