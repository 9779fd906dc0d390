// Package apptest runs the whole tenantd HTTP stack (internal/app over the
// package's real PostgreSQL and Redis from internal/testenv) in tests, with
// small helpers to create tenants and send requests as a client would.
package apptest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/app"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// OperatorKey is the PLATFORM_API_KEY of test servers.
const OperatorKey = "test-operator-key-0123456789abcdef"

// logs collects what every server of the package logged (unless a test
// gives its own writer), and secrets every credential sent with Do: after
// the package's tests, no secret may appear in the logs.
var (
	logs        SyncBuffer
	secrets     sync.Map
	checkLogsOn sync.Once
)

// checkLogs fails when a credential sent by a test appears in the logs.
func checkLogs() error {
	out := logs.String()
	if out == "" {
		return errors.New("apptest: the servers logged nothing: the log redaction check would prove nothing")
	}
	var leaked []string
	secrets.Range(func(k, _ any) bool {
		if s := k.(string); strings.Contains(out, s) {
			leaked = append(leaked, s[:min(len(s), 12)]+"…")
		}
		return true
	})
	if len(leaked) > 0 {
		return fmt.Errorf("apptest: %d credentials appear in the server logs: %v", len(leaked), leaked)
	}
	return nil
}

// Server is a running tenantd for one test; its Client sends requests to
// it.
type Server struct {
	*Client
	App *app.App
	URL string
	Env *testenv.Env
	t   testing.TB
}

// Options adjust the server's configuration.
type Options struct {
	MaxConns int                  // database pool size; default 8
	Config   func(*config.Config) // edits the configuration before wiring
	Log      io.Writer            // where logs go; default discarded
	// OnDB, when set, sees the server's database pool before the server is
	// wired, e.g. to register GORM callbacks that count statements.
	OnDB func(*db.DB)
	// RedisURL replaces the package's Redis, e.g. with a
	// testenv.PrivateRedis that the test stops and restarts.
	RedisURL string
	// BeforeRun, when set, sees the wired app before its background work
	// starts, e.g. to subscribe a test's own event handler.
	BeforeRun func(*app.App)
}

// Config loads tenantd's configuration as from an environment holding
// env's database URLs, redisURL as REDIS_URL and vars, and nothing else:
// every other setting has its default.
func Config(t testing.TB, env *testenv.Env, redisURL string, vars map[string]string) config.Config {
	t.Helper()
	cfg, err := config.Load(func(name string) string {
		switch name {
		case "DATABASE_URL":
			return env.AppURL
		case "MIGRATE_DATABASE_URL":
			return env.OwnerURL
		case "WORKER_DATABASE_URL":
			return env.WorkerURL
		case "REDIS_URL":
			return redisURL
		}
		return vars[name]
	})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// New starts a server on an httptest listener, stopped when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	env := testenv.Get(t)
	redisURL := env.RedisURL
	if opts.RedisURL != "" {
		redisURL = opts.RedisURL
	}
	cfg := Config(t, env, redisURL, map[string]string{
		"PLATFORM_API_KEY":            OperatorKey,
		"OIDC_ALLOW_INSECURE_ISSUERS": "true", // the test identity provider serves http on 127.0.0.1
	})
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = 8
	}
	checkLogsOn.Do(func() { testenv.AfterTests(checkLogs) })
	logOut := opts.Log
	if logOut == nil {
		logOut = &logs
	}
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := env.OpenDB(t, opts.MaxConns)
	if opts.OnDB != nil {
		opts.OnDB(d)
	}
	if err := d.CheckRuntimeRole(context.Background()); err != nil {
		t.Fatalf("runtime role: %v", err)
	}
	a, err := app.New(cfg, d, testenv.NewRedisClient(t, redisURL), log)
	if err != nil {
		t.Fatalf("wire app: %v", err)
	}
	if opts.BeforeRun != nil {
		opts.BeforeRun(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	hs := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		hs.Close()
		cancel()
		<-done
	})
	return &Server{Client: &Client{t: t, url: hs.URL}, App: a, URL: hs.URL, Env: env, t: t}
}

// NewWithTenant starts a server with the default options, as New does, and
// creates one tenant on plan whose slug is Slug(prefix): how most HTTP
// tests begin.
func NewWithTenant(t testing.TB, prefix, plan string) (*Server, Tenant) {
	t.Helper()
	s := New(t, Options{})
	return s, s.NewTenant(prefix, plan)
}

// Slug returns prefix with a random suffix: a tenant slug that no other
// test, nor an earlier run on the same database, has taken.
func Slug(prefix string) string {
	return prefix + "-" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
}

// Tenant is a tenant created through the operator API, with its admin key.
type Tenant struct {
	ID   string
	Slug string
	Key  string
}

// CreateTenant creates a tenant with the given slug and plan through
// POST /admin/v1/tenants.
func (s *Server) CreateTenant(slug, plan string) Tenant {
	s.t.Helper()
	resp := s.Do(Request{Method: "POST", Path: "/admin/v1/tenants", Key: OperatorKey,
		Body: map[string]string{"slug": slug, "name": "Tenant " + slug, "plan": plan}})
	if resp.Status != http.StatusCreated {
		s.t.Fatalf("create tenant %s: got %d %s, want 201", slug, resp.Status, resp.Body)
	}
	var out struct {
		ID          string `json:"id"`
		Slug        string `json:"slug"`
		AdminAPIKey string `json:"admin_api_key"`
	}
	resp.JSON(s.t, &out)
	secrets.Store(out.AdminAPIKey, true)
	return Tenant{ID: out.ID, Slug: out.Slug, Key: out.AdminAPIKey}
}

// NewTenant creates a tenant on plan whose slug is Slug(prefix).
func (s *Server) NewTenant(prefix, plan string) Tenant {
	s.t.Helper()
	return s.CreateTenant(Slug(prefix), plan)
}

// CreateKey creates an API key with the given roles for the tenant and
// returns its secret.
func (s *Server) CreateKey(adminKey string, roles ...string) string {
	s.t.Helper()
	resp := s.Do(Request{Method: "POST", Path: "/v1/api-keys", Key: adminKey,
		Body: map[string]any{"name": "test key", "roles": roles}})
	if resp.Status != http.StatusCreated {
		s.t.Fatalf("create key: got %d %s, want 201", resp.Status, resp.Body)
	}
	var out struct {
		Secret string `json:"secret"`
	}
	resp.JSON(s.t, &out)
	secrets.Store(out.Secret, true)
	return out.Secret
}
