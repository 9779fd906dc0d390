//go:build chaos

package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/devenv"
)

// operatorKey is the replicas' PLATFORM_API_KEY.
const operatorKey = "chaos-operator-key-0123456789abcdef"

// cluster is the system under test: PostgreSQL and Redis from devenv, one
// database, and two replicas of the real binary.
type cluster struct {
	env      *devenv.Env
	db       devenv.Database
	bin      string
	dir      string
	replicas []*replica
	tenants  []tenant
	client   *http.Client
}

// tenant is one of the load's two tenants.
type tenant struct {
	ID       string
	Key      string
	Products []string
	Stock    int64 // initial stock of each product
}

// replica is one `tenantd serve` process.
type replica struct {
	name   string
	addr   string
	extra  []string // environment beyond the cluster's
	cmd    *exec.Cmd
	exited chan error
	logs   *os.File
	api    *apptest.Client // sends requests to addr
}

// newCluster builds tenantd, starts PostgreSQL and Redis, migrates a
// database, starts the two replicas and creates the tenants.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	ctx := t.Context()
	c := &cluster{dir: t.TempDir(), client: &http.Client{Timeout: 20 * time.Second}}
	c.bin = apptest.BuildBinary(t, "../..")
	env, err := devenv.Start(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("start postgres and redis: %v", err)
	}
	c.env = env
	t.Cleanup(env.Stop)
	if c.db, err = devenv.Provision(ctx, env.AdminURL, "chaos"); err != nil {
		t.Fatal(err)
	}
	migrate := exec.Command(c.bin, "migrate", "up")
	migrate.Env = append(os.Environ(), "MIGRATE_DATABASE_URL="+c.db.OwnerURL, "DATABASE_URL="+c.db.AppURL)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	// The first migration creates the runtime role; it logs in with the
	// dev password.
	if err := devenv.SetAppPassword(ctx, env.AdminURL); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		addr := apptest.FreeAddr(t)
		r := &replica{name: name, addr: addr, api: apptest.NewURLClient(t, "http://"+addr, c.client)}
		c.replicas = append(c.replicas, r)
		c.start(t, r)
	}
	t.Cleanup(func() {
		for _, r := range c.replicas {
			r.kill()
		}
	})
	for i := range 2 {
		c.tenants = append(c.tenants, c.newTenant(t, fmt.Sprintf("chaos-%d", i)))
	}
	return c
}

// start starts r and waits until it is ready.
func (c *cluster) start(t *testing.T, r *replica) {
	t.Helper()
	logs, err := os.OpenFile(filepath.Join(c.dir, "replica-"+r.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	r.logs = logs
	r.cmd = exec.Command(c.bin, "serve")
	r.cmd.Env = append(os.Environ(),
		"DATABASE_URL="+withAppName(c.db.AppURL, "tenantd-"+r.name),
		"WORKER_DATABASE_URL="+withAppName(c.db.WorkerURL, "tenantd-"+r.name+"-worker"),
		"REDIS_URL="+c.env.RedisURL,
		"HTTP_ADDR="+r.addr,
		"PLATFORM_API_KEY="+operatorKey,
		"ORDER_RESERVATION_TTL=3s",
		"SHUTDOWN_DRAIN_DELAY=300ms",
		"SHUTDOWN_TIMEOUT=15s",
		"CURSOR_SECRET=chaos-cursor-secret-0123456789abcdef",
		"LOG_LEVEL=warn",
	)
	r.cmd.Env = append(r.cmd.Env, r.extra...)
	r.cmd.Stdout, r.cmd.Stderr = logs, logs
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan error) { exited <- cmd.Wait() }(r.cmd, r.exited)
	c.waitReady(t, r, 60*time.Second)
}

// waitReady waits until r's /readyz answers 200.
func (c *cluster) waitReady(t *testing.T, r *replica, within time.Duration) {
	t.Helper()
	apptest.WaitReady(t, "http://"+r.addr, within, r.exited, func() string { return "replica " + r.name + ":\n" + r.tail() })
}

// withAppName sets application_name in a PostgreSQL URL, so the
// replica's sessions can be told apart in pg_stat_activity.
func withAppName(url, name string) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "application_name=" + name
}

// signal sends sig to r.
func (r *replica) signal(sig syscall.Signal) error { return r.cmd.Process.Signal(sig) }

// wait waits for r to exit and returns its exit code.
func (r *replica) wait(within time.Duration) (int, error) {
	select {
	case <-r.exited:
		return r.cmd.ProcessState.ExitCode(), nil
	case <-time.After(within):
		return -1, fmt.Errorf("replica %s still running after %v", r.name, within)
	}
}

// kill ends r if it still runs.
func (r *replica) kill() {
	if r.cmd == nil || r.cmd.ProcessState != nil {
		return
	}
	if err := r.cmd.Process.Kill(); err == nil {
		<-r.exited
	}
	r.logs.Close()
}

// tail is the end of r's log, for failure messages.
func (r *replica) tail() string {
	b, err := os.ReadFile(r.logs.Name())
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// call sends one request to r and decodes a JSON object answer; the
// object of an error answer also holds the raw body as "_body".
func (c *cluster) call(ctx context.Context, r *replica, method, path, key string, body any, header map[string]string) (int, map[string]any, error) {
	resp, err := r.api.Try(apptest.Request{Method: method, Path: path, Key: key, Body: body,
		Header: header, Context: ctx})
	if err != nil {
		return 0, nil, err
	}
	var out map[string]any
	if len(resp.Body) > 0 && resp.Body[0] == '{' {
		if err := json.Unmarshal(resp.Body, &out); err != nil {
			return resp.Status, nil, err
		}
	}
	if out == nil {
		out = map[string]any{}
	}
	if resp.Status >= 400 {
		out["_body"] = string(resp.Body)
	}
	return resp.Status, out, nil
}

// newTenant creates a tenant with products through replica a.
func (c *cluster) newTenant(t *testing.T, slug string) tenant {
	t.Helper()
	ctx := t.Context()
	status, out, err := c.call(ctx, c.replicas[0], "POST", "/admin/v1/tenants", operatorKey,
		map[string]string{"slug": slug, "name": slug, "plan": "enterprise"}, nil)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("create tenant: %d %v %v", status, out, err)
	}
	tn := tenant{ID: out["id"].(string), Key: out["admin_api_key"].(string), Stock: 1_000_000}
	for i := range 4 {
		status, p, err := c.call(ctx, c.replicas[0], "POST", "/v1/products", tn.Key,
			map[string]any{"sku": fmt.Sprintf("C-%d", i), "name": "Chaos", "price": 100, "currency": "EUR", "stock": tn.Stock}, nil)
		if err != nil || status != http.StatusCreated {
			t.Fatalf("create product: %d %v %v", status, p, err)
		}
		tn.Products = append(tn.Products, p["id"].(string))
	}
	return tn
}

// admin connects as the superuser to the cluster's database; PostgreSQL
// restarts break connections, so every check opens its own.
func (c *cluster) admin(t *testing.T) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(c.env.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = c.db.Name
	var conn *pgx.Conn
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err = pgx.ConnectConfig(t.Context(), cfg); err == nil {
			t.Cleanup(func() { conn.Close(context.Background()) })
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect as admin: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// restartReplica ends r (already stopped or not) and starts it again.
func (c *cluster) restartReplica(t *testing.T, r *replica) {
	t.Helper()
	r.kill()
	c.start(t, r)
}

// leaseHolder is the replica whose session holds the event dispatcher's
// subscriber leases (advisory locks of class 0x65760002).
func (c *cluster) leaseHolder(t *testing.T) *replica {
	t.Helper()
	conn := c.admin(t)
	var app string
	err := conn.QueryRow(t.Context(), `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		WHERE l.locktype = 'advisory' AND l.classid = 1702232066::oid AND l.granted LIMIT 1`).Scan(&app)
	if err != nil {
		t.Fatalf("find the dispatcher's lease holder: %v", err)
	}
	for _, r := range c.replicas {
		if app == "tenantd-"+r.name {
			return r
		}
	}
	t.Fatalf("lease held by %q, which is no replica", app)
	return nil
}

// holdProductLocks locks every product of tn for hold, from a session of
// its own, as a stuck transaction would.
func (c *cluster) holdProductLocks(t *testing.T, tn tenant, hold time.Duration) {
	t.Helper()
	conn := c.admin(t)
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "SELECT id FROM products WHERE tenant_id = $1 ORDER BY id FOR UPDATE", tn.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(hold)
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
}
