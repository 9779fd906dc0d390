// Package testenv gives each test package real PostgreSQL and Redis servers:
// its own database, migrated from migrations/ and served as the runtime role
// tenantd_app, and its own Redis. It uses TEST_DATABASE_URL (a superuser or
// CREATEDB+CREATEROLE role) when set, and otherwise starts throw-away servers
// from the local binaries through internal/devenv. Nothing is mocked.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// and in a test: env := testenv.Get(t).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/migrations"
)

// Env is a test package's servers and database.
type Env struct {
	AdminURL  string // superuser (or CREATEDB+CREATEROLE) URL of the server
	OwnerURL  string // tenantd_owner on the package's database
	AppURL    string // tenantd_app on the package's database
	WorkerURL string // tenantd_worker on the package's database
	DBName    string
	RedisURL  string

	// Redis is the package's throw-away Redis, when testenv started it; tests
	// may stop and restart it to see how tenantd copes.
	Redis *devenv.Env

	pg *devenv.Env
}

var (
	current    *Env
	setupMu    sync.Mutex
	afterTests []func() error
)

// AfterTests registers a check that runs once the package's tests have
// passed; an error fails the package. apptest uses it to prove no
// credential it sent ever reached a log.
func AfterTests(check func() error) {
	setupMu.Lock()
	defer setupMu.Unlock()
	afterTests = append(afterTests, check)
}

// Main sets up the package's environment, runs the tests and tears it down.
// A failure to set up is fatal: a test that needs PostgreSQL never skips.
func Main(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := setUp(ctx)
	if err != nil {
		return 1, err
	}
	setupMu.Lock()
	current = env
	setupMu.Unlock()
	code := m.Run()
	setupMu.Lock()
	checks := afterTests
	setupMu.Unlock()
	for _, check := range checks {
		if err := check(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: after the tests:", err)
			code = max(code, 1)
		}
	}
	env.tearDown()
	return code, nil
}

// Get returns the package's environment; TestMain must have called Main.
func Get(t testing.TB) *Env {
	t.Helper()
	setupMu.Lock()
	defer setupMu.Unlock()
	if current == nil {
		t.Fatal("testenv: TestMain must call testenv.Main(m)")
	}
	return current
}

func quietLogger() *slog.Logger {
	if os.Getenv("TESTENV_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func setUp(ctx context.Context) (env *Env, err error) {
	log := quietLogger()
	env = &Env{AdminURL: os.Getenv("TEST_DATABASE_URL")}
	defer func() {
		if err != nil {
			env.tearDown()
		}
	}()
	if env.AdminURL == "" {
		if env.pg, err = devenv.Start(ctx, log); err != nil {
			return env, err
		}
		env.AdminURL = env.pg.AdminURL
		env.Redis = env.pg
	}
	if env.Redis == nil {
		switch {
		case devenv.HaveRedisServer():
			if env.Redis, err = devenv.StartRedisOnly(ctx, log); err != nil {
				return env, err
			}
		case os.Getenv("TEST_REDIS_URL") != "":
			env.RedisURL = os.Getenv("TEST_REDIS_URL")
		default:
			return env, fmt.Errorf("no redis-server binary and no TEST_REDIS_URL: install redis-server")
		}
	}
	if env.Redis != nil {
		env.RedisURL = env.Redis.RedisURL
	}
	env.DBName = databaseName()
	dbase, err := devenv.Provision(ctx, env.AdminURL, env.DBName)
	if err != nil {
		return env, err
	}
	env.OwnerURL, env.AppURL, env.WorkerURL = dbase.OwnerURL, dbase.AppURL, dbase.WorkerURL
	if err := migrateUp(env.OwnerURL); err != nil {
		return env, err
	}
	if err := devenv.SetAppPassword(ctx, env.AdminURL); err != nil {
		return env, err
	}
	return env, nil
}

func migrateUp(ownerURL string) error {
	m, err := db.NewMigrator(ownerURL, migrations.Files)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Up()
}

func (e *Env) tearDown() {
	if e.DBName != "" && e.pg == nil && e.AdminURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := devenv.Drop(ctx, e.AdminURL, e.DBName); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
		}
	}
	if e.pg != nil {
		e.pg.Stop()
	} else if e.Redis != nil {
		e.Redis.Stop()
	}
}

var nonWord = regexp.MustCompile(`[^a-z0-9_]+`)

// databaseName is unique per test binary run: tenantd_test_<package>_<random>.
func databaseName() string {
	base := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	base = nonWord.ReplaceAllString(strings.ToLower(base), "_")
	if len(base) > 30 {
		base = base[:30]
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "tenantd_test_" + base + "_" + hex.EncodeToString(b)
}

// OpenDB opens a runtime-role pool on the package's database, with its
// Worker pool, closed when the test ends.
func (e *Env) OpenDB(t testing.TB, maxConns int) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), e.AppURL, db.Options{MaxConns: maxConns, WorkerURL: e.WorkerURL})
	if err != nil {
		t.Fatalf("open app database: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// OpenOwnerDB opens a pool as the owner role, for fixtures and catalog checks
// that must see past row-level security.
func (e *Env) OpenOwnerDB(t testing.TB) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), e.OwnerURL, db.Options{MaxConns: 4})
	if err != nil {
		t.Fatalf("open owner database: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// RedisClient returns a client for the package's Redis, closed when the test
// ends.
func (e *Env) RedisClient(t testing.TB) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(e.RedisURL)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}
