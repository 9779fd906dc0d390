// Package testenv gives each test package real PostgreSQL and Redis: its
// own database, a copy of a template migrated from migrations/ and served as
// the runtime role tenantd_app, and its own Redis database. Nothing is
// mocked.
//
// The servers are shared by every test package of a run (one `go test`):
// the first package to start launches a keeper process that starts
// PostgreSQL and Redis from the local binaries through internal/devenv,
// the others join it, and the keeper stops them when the run is over (see
// keeper.go). TEST_DATABASE_URL (a superuser or CREATEDB+CREATEROLE role on
// an existing server) and TEST_REDIS_URL (a Redis whose databases 1 to 15
// tests may flush) replace the shared servers. Tests that stop Redis use a
// server of their own (PrivateRedis); a package that must restart its
// servers asks for private ones (Main(m, Private())). TEST_CITUS_URL runs
// the packages on a Citus cluster instead (see citus.go).
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
	RedisURL  string // the package's database of the Redis
	// Citus is true when the package's database is on the Citus cluster of
	// TEST_CITUS_URL (AdminURL is then the coordinator's), its tables
	// distributed by the migrations.
	Citus bool

	plain plainServer // PlainDatabase's server in Citus mode

	redisDB *redisDB
	release func()      // lets go of the run's shared servers
	private *devenv.Env // the package's own servers, with Private

	ownerOnce sync.Once
	owner     *db.DB // NewTenant's pool
	ownerErr  error
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

// Option adjusts how Main sets the package up.
type Option func(*options)

type options struct{ private, requireCitus bool }

// Private gives the package PostgreSQL and Redis servers of its own instead
// of the run's shared ones, for tests that stop or restart them.
func Private() Option { return func(o *options) { o.private = true } }

// Main sets up the package's environment, runs the tests and tears it down.
// A failure to set up is fatal: a test that needs PostgreSQL never skips.
// In the keeper process of a run (see keeper.go) it keeps the shared
// servers instead of running tests.
func Main(m *testing.M, opts ...Option) {
	if dir := os.Getenv(keeperEnv); dir != "" {
		os.Exit(keep(dir))
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	code, err := runTests(m, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runTests(m *testing.M, o options) (int, error) {
	timeout := 3 * time.Minute
	if citusURL() != "" {
		timeout = citusSetUpTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	env, err := setUp(ctx, o)
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

func setUp(ctx context.Context, o options) (env *Env, err error) {
	env = &Env{}
	defer func() {
		if err != nil {
			env.tearDown()
		}
	}()
	adminURL, redisURL := os.Getenv("TEST_DATABASE_URL"), os.Getenv("TEST_REDIS_URL")
	if err := checkCitusOptions(o, adminURL); err != nil {
		return env, err
	}
	if citusURL() != "" {
		adminURL, env.Citus = citusURL(), true
	}
	var redisLocks string
	if redisURL != "" {
		if redisLocks, err = redisLockDir(redisURL); err != nil {
			return env, err
		}
	} else if !devenv.HaveRedisServer() {
		return env, fmt.Errorf("no redis-server binary and no TEST_REDIS_URL: install redis-server")
	}
	switch {
	case o.private:
		if adminURL == "" {
			env.private, err = devenv.Start(ctx, Logger())
		} else if redisURL == "" {
			env.private, err = devenv.StartRedisOnly(ctx, Logger())
		}
		if err != nil {
			return env, err
		}
		if adminURL == "" {
			adminURL = env.private.AdminURL
		}
		if redisURL == "" {
			redisURL, redisLocks = env.private.RedisURL, env.private.Dir()
		}
	case adminURL == "" || redisURL == "":
		st, r, release, err := join(ctx, adminURL == "", redisURL == "")
		if err != nil {
			return env, err
		}
		env.release = release
		if adminURL == "" {
			adminURL = st.AdminURL
		}
		if redisURL == "" {
			redisURL, redisLocks = st.RedisURL, r.dir
		}
	}
	env.AdminURL = adminURL
	env.DBName = databaseName()
	dbase, err := env.newDatabase(ctx, env.DBName)
	if err != nil {
		return env, err
	}
	env.OwnerURL, env.AppURL, env.WorkerURL = dbase.OwnerURL, dbase.AppURL, dbase.WorkerURL
	if env.redisDB, err = claimRedisDB(ctx, redisURL, redisLocks); err != nil {
		return env, err
	}
	env.RedisURL = env.redisDB.url
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e.owner != nil {
		e.owner.Close()
	}
	if e.OwnerURL != "" && e.private == nil {
		if err := devenv.Drop(ctx, e.AdminURL, e.DBName); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
		}
	}
	if err := e.redisDB.release(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
	}
	if e.release != nil {
		e.release()
	}
	if e.private != nil {
		e.private.Stop()
	}
	e.stopPlain()
}

var nonWord = regexp.MustCompile(`[^a-z0-9_]+`)

// databaseName is unique per test binary run: tenantd_test_<package>_<random>.
func databaseName() string {
	base := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	base = nonWord.ReplaceAllString(strings.ToLower(base), "_")
	if len(base) > 30 {
		base = base[:30]
	}
	return "tenantd_test_" + base + "_" + RandomHex(4)
}

// RandomHex is n random bytes in hex, for names no other test uses.
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// OpenDB opens a runtime-role pool on the package's database, with its
// Worker pool, closed when the test ends.
func (e *Env) OpenDB(t testing.TB, maxConns int) *db.DB {
	t.Helper()
	return openPool(t, "app", e.AppURL, db.Options{MaxConns: maxConns, WorkerURL: e.WorkerURL})
}

// OpenOwnerDB opens a pool as the owner role, for fixtures and catalog checks
// that must see past row-level security.
func (e *Env) OpenOwnerDB(t testing.TB) *db.DB {
	t.Helper()
	return openPool(t, "owner", e.OwnerURL, db.Options{MaxConns: 4})
}

// openPool opens a pool on url, closed when the test ends; role names it
// in the failure.
func openPool(t testing.TB, role, url string, opts db.Options) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("open %s database: %v", role, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// RedisClient returns a client for the package's Redis, closed when the test
// ends.
func (e *Env) RedisClient(t testing.TB) *redis.Client {
	t.Helper()
	return NewRedisClient(t, e.RedisURL)
}

// NewRedisClient returns a client for the Redis at url, closed when the
// test ends.
func NewRedisClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse redis url: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// Redis is a Redis server of one test's own (PrivateRedis).
type Redis struct {
	URL string
	srv *devenv.Env
}

// Client returns a client for the server, closed when the test ends.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	return NewRedisClient(t, r.URL)
}

// Stop stops the server; Start starts it again on the same port.
func (r *Redis) Stop() { r.srv.StopRedis() }

// Start starts the stopped server again on the same port.
func (r *Redis) Start(ctx context.Context) error { return r.srv.StartRedis(ctx) }

// PrivateRedis starts a Redis server of the test's own, stopped when the
// test ends, for tests that stop and restart Redis to see how tenantd
// copes: the package's Redis is shared with its other tests and with other
// packages.
func PrivateRedis(t testing.TB) *Redis {
	t.Helper()
	if !devenv.HaveRedisServer() {
		t.Fatal("testenv: PrivateRedis needs the redis-server binary: install redis-server")
	}
	r, err := devenv.StartRedisOnly(t.Context(), Logger())
	if err != nil {
		t.Fatalf("start a private redis: %v", err)
	}
	t.Cleanup(r.Stop)
	return &Redis{URL: r.RedisURL, srv: r}
}

// NewDatabase creates a migrated database of the test's own on the
// package's server, dropped when the test ends, for tests that must not see
// the rows other tests write to the package's database (exports of every
// tenant, for instance). In Citus mode it is on the cluster, like the
// package's.
func (e *Env) NewDatabase(t testing.TB) devenv.Database {
	t.Helper()
	name := e.DBName + "_" + RandomHex(4)
	dbase, err := e.newDatabase(t.Context(), name)
	if err != nil {
		t.Fatalf("new database: %v", err)
	}
	t.Cleanup(func() {
		if err := devenv.Drop(context.Background(), e.AdminURL, name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return dbase
}
