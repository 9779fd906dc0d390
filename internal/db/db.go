// Package db owns the PostgreSQL connection pool and the only ways to reach
// tenant data: WithTenant, which runs a function in one transaction with the
// tenant set for row-level security, and WithPlatform, the narrow path for
// operator work on the tenants table.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // also registers the "pgx" database/sql driver the migrator uses
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/tenantd/tenantd/internal/wait"
)

// DB is the runtime connection pool.
type DB struct {
	gorm *gorm.DB
	sql  *sql.DB
	// hooks are shared with the LongRunning view.
	hooks *hooks
	// long is the LongRunning view's pool; nil when it is this one.
	long *DB
	// worker is the background workers' pool (the tenantd_worker role);
	// nil when none was configured.
	worker *DB
}

// hooks are the pool's wiring-time callbacks.
type hooks struct {
	// beforeCommit, when set, runs at the end of every WithTenant
	// transaction (see SetBeforeCommit).
	beforeCommit BeforeCommit
	// onRetry, when set, is told of every transaction retried (see
	// SetOnRetry).
	onRetry atomic.Pointer[func(code string)]
}

// BeforeCommit is a hook that WithTenant runs in each of its transactions
// after fn succeeded and just before COMMIT, on the same tx and with the same
// ctx, so that it can add rows that commit or roll back with fn's (the audit
// trail's per-request entry). An error rolls the transaction back and is
// returned by WithTenant. The hook may return after, which WithTenant then
// calls once the transaction has ended, telling it whether it committed.
// When WithTenant retries (see WithTenant), the hook runs again in each
// attempt, and each attempt's after is called (with false for the attempts
// that failed) before the next attempt begins.
type BeforeCommit func(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID) (after func(committed bool), err error)

// SetBeforeCommit installs the pool's one BeforeCommit hook (nil removes
// it). Call it while wiring, before the pool is used concurrently. The hook
// runs for every tenant transaction, so it must return at once when it has
// nothing to do.
func (d *DB) SetBeforeCommit(hook BeforeCommit) { d.hooks.beforeCommit = hook }

// SetOnRetry installs fn, which is called with the SQLSTATE (40P01 or 40001)
// each time WithTenant or WithPlatform retries a transaction, for the
// tenantd_db_tx_retries_total metric. nil removes it.
func (d *DB) SetOnRetry(fn func(code string)) {
	if fn == nil {
		d.hooks.onRetry.Store(nil)
		return
	}
	d.hooks.onRetry.Store(&fn)
}

// Options tune the pool.
type Options struct {
	MaxConns int
	// Tracing adds an OpenTelemetry span to every query (otelpgx, a pgx
	// tracer: statement text only, never the bound values, which hold
	// tenants' data).
	Tracing bool
	// LockTimeout, StatementTimeout and IdleInTxTimeout become the
	// lock_timeout, statement_timeout and idle_in_transaction_session_timeout
	// of every connection of the pool (rounded up to whole milliseconds),
	// so that no request waits on a lock, runs a statement, or leaves a
	// transaction open longer than that. Zero leaves the server's setting
	// (off, unless the role or database sets one). The errors they cause
	// (55P03, 57014, 25P03) are answered 503 by internal/httpx. Keep
	// LockTimeout above the server's deadlock_timeout (1s by default), or
	// deadlocks surface as lock timeouts and are not retried.
	LockTimeout      time.Duration
	StatementTimeout time.Duration
	IdleInTxTimeout  time.Duration
	// WorkerURL, when set, opens a second, small pool as the worker role
	// (tenantd_worker), returned by Worker: the only role that may execute
	// the SECURITY DEFINER functions that read across tenants (event
	// dispatch, sweepers, reconciler, metering, billing exports). The
	// runtime role of url cannot, so a request's SQL cannot either.
	WorkerURL string
}

// workerConns is the size of the Worker pool: a handful of background loops
// and the operator's billing reads, each a statement at a time.
const workerConns = 4

// longRunningConns is the size of the LongRunning pool: exports are rare
// and run their statements one after the other, but one may stream a
// download for minutes while another is looked up.
const longRunningConns = 2

// Open connects to url and checks the connection.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	setTimeout(cfg, "lock_timeout", opts.LockTimeout)
	setTimeout(cfg, "statement_timeout", opts.StatementTimeout)
	setTimeout(cfg, "idle_in_transaction_session_timeout", opts.IdleInTxTimeout)
	if opts.MaxConns <= 0 {
		opts.MaxConns = 20
	}
	if opts.Tracing {
		cfg.Tracer = otelpgx.NewTracer()
	}
	h := &hooks{}
	d, err := openPool(cfg, opts.MaxConns, h)
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.sql.PingContext(pingCtx); err != nil {
		d.sql.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if opts.StatementTimeout > 0 {
		long := cfg.Copy()
		delete(long.RuntimeParams, "statement_timeout")
		if d.long, err = openPool(long, longRunningConns, h); err != nil {
			d.sql.Close()
			return nil, err
		}
		// An export runs seldom: do not keep its connection idle for long.
		d.long.sql.SetConnMaxIdleTime(time.Minute)
	}
	if opts.WorkerURL != "" {
		wopts := opts
		wopts.WorkerURL, wopts.MaxConns = "", workerConns
		if d.worker, err = Open(ctx, opts.WorkerURL, wopts); err != nil {
			d.Close()
			return nil, fmt.Errorf("worker pool: %w", err)
		}
		if d.long != nil {
			d.long.worker = d.worker.LongRunning()
		}
	}
	return d, nil
}

// openPool opens (without connecting) a pool of at most maxConns
// connections configured by cfg.
func openPool(cfg *pgx.ConnConfig, maxConns int, h *hooks) (*DB, error) {
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxOpenConns(maxConns)
	sqlDB.SetMaxIdleConns(maxConns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	g, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{
		SkipDefaultTransaction: true,
		Logger:                 logger.Discard,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("open gorm: %w", err)
	}
	return &DB{gorm: g, sql: sqlDB, hooks: h}, nil
}

// setTimeout sets the runtime parameter name of every connection to d
// (whole milliseconds, rounded up); zero leaves it alone.
func setTimeout(cfg *pgx.ConnConfig, name string, d time.Duration) {
	if d <= 0 {
		return
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	cfg.RuntimeParams[name] = strconv.FormatInt(int64(ms), 10) + "ms"
}

// LongRunning returns d for work that legitimately runs for minutes, such
// as billing exports (billing_close_period, billing_export_rows streamed to
// a client): the same database and hooks through a separate pool of one
// connection whose statements have no statement_timeout. lock_timeout and
// idle_in_transaction_session_timeout still apply. Without a
// StatementTimeout it is d itself.
func (d *DB) LongRunning() *DB {
	if d.long == nil {
		return d
	}
	return d.long
}

// Worker returns the pool of the worker role, for the background workers'
// reads across tenants through SECURITY DEFINER functions (see
// Options.WorkerURL). Its WithTenant and WithPlatform work as d's. Without
// a WorkerURL it is d itself, whose runtime role PostgreSQL refuses those
// functions (42501).
func (d *DB) Worker() *DB {
	if d.worker == nil {
		return d
	}
	return d.worker
}

// Close closes the pool (and the LongRunning and Worker ones).
func (d *DB) Close() error {
	var errs []error
	if d.worker != nil {
		errs = append(errs, d.worker.Close())
	}
	if d.long != nil {
		errs = append(errs, d.long.sql.Close())
	}
	return errors.Join(append(errs, d.sql.Close())...)
}

// Ping checks the database answers.
func (d *DB) Ping(ctx context.Context) error { return d.sql.PingContext(ctx) }

// Stats reports the pool's statistics.
func (d *DB) Stats() sql.DBStats { return d.sql.Stats() }

// ErrNoTenant is returned when WithTenant is called without a tenant.
var ErrNoTenant = errors.New("db: no tenant given")

// WithTenant runs fn in one transaction in which row-level security admits
// only tenantID's rows. The tenant is bound by app_bind_tenant (migration
// 0024), a SET LOCAL, so it can never outlive the transaction on a pooled
// connection, and on Citus it reaches every worker the transaction uses.
// fn must run every statement on tx. The BeforeCommit hook, if set, runs
// after fn in the same transaction.
//
// A transaction that fails with a deadlock (40P01) or a serialization
// failure (40001) is rolled back and run again, fn included, up to
// txAttempts times in all, after a short jittered pause; not once ctx is
// done. fn must therefore be safe to run again: it may set variables it
// declares or overwrites, but must not append to outer slices, count,
// send on channels or call out (a payment gateway) — do those after
// WithTenant returns. The error of the last attempt is returned.
func (d *DB) WithTenant(ctx context.Context, tenantID uuid.UUID, fn func(tx *gorm.DB) error) error {
	if tenantID == uuid.Nil {
		return ErrNoTenant
	}
	return classify(d.retry(ctx, func() error { return d.tenantTx(ctx, tenantID, fn) }))
}

// Read returns what fn reads in a transaction of tenantID: WithTenant, with
// fn's value carried out of it, for the get and list methods that would
// otherwise declare a variable for the closure to set. It is WithTenant
// itself: the transaction is not read-only (the BeforeCommit hook may
// write), and after a deadlock or serialization failure it runs again, fn
// with it, returning the value of the attempt that committed. On error it
// returns the zero T.
func Read[T any](ctx context.Context, d *DB, tenantID uuid.UUID, fn func(tx *gorm.DB) (T, error)) (T, error) {
	var out T
	err := d.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
		out, err = fn(tx)
		return err
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return out, nil
}

// tenantTx is one attempt of WithTenant.
func (d *DB) tenantTx(ctx context.Context, tenantID uuid.UUID, fn func(tx *gorm.DB) error) error {
	var after func(committed bool)
	beforeCommit := d.hooks.beforeCommit
	// BEGIN and the tenant in one round trip; tenantID is a UUID, so its
	// text needs no quoting beyond the literal's.
	setTenant := "SELECT app_bind_tenant('" + tenantID.String() + "')"
	committed := false
	defer func() {
		// Deferred, so that a panic still ends the hook's claim.
		if after != nil {
			after(committed)
		}
	}()
	err := d.runTx(ctx, setTenant, func(tx *gorm.DB) error {
		if err := fn(tx); err != nil {
			return err
		}
		if beforeCommit == nil {
			return nil
		}
		var err error
		after, err = beforeCommit(ctx, tx, tenantID)
		return err
	})
	committed = err == nil
	return err
}

// txAttempts bounds how often WithTenant and WithPlatform run a
// transaction that keeps failing with 40P01 or 40001.
const txAttempts = 3

// retryPause is the pause before the first retry; it doubles for each
// further one, plus up to as much again at random so that the transactions
// that collided do not collide again.
const retryPause = 5 * time.Millisecond

// retry runs attempt until it succeeds, fails with an error a retry cannot
// help, has run txAttempts times, or ctx is done.
func (d *DB) retry(ctx context.Context, attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		code, ok := retryable(err)
		if !ok {
			return err
		}
		if n == txAttempts {
			return fmt.Errorf("after %d attempts: %w", n, err)
		}
		pause := retryPause << (n - 1)
		if !wait.Sleep(ctx, pause+rand.N(pause)) {
			return fmt.Errorf("%w (not retried: %w)", err, ctx.Err())
		}
		if fn := d.hooks.onRetry.Load(); fn != nil {
			(*fn)(code)
		}
	}
}

// retryable returns the SQLSTATE of err when running its transaction again
// may succeed: a deadlock or a serialization failure; or "connection" for
// a connection found dead before the transaction began.
func retryable(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	if errors.Is(err, errBegin) && connectionLost(err) {
		// A pooled connection the server had closed (a restart): nothing
		// ran, and the next attempt takes another connection.
		return "connection", true
	}
	switch code := SQLState(err); code {
	case "40P01", "40001":
		return code, true
	}
	return "", false
}

// SetTenant binds the tenant for the rest of the transaction tx (with
// app_bind_tenant, like WithTenant). Only platform work that acts for a
// tenant it has just created needs it directly.
func SetTenant(tx *gorm.DB, tenantID uuid.UUID) error {
	if tenantID == uuid.Nil {
		return ErrNoTenant
	}
	if err := tx.Exec("SELECT app_bind_tenant(?)", tenantID.String()).Error; err != nil {
		return fmt.Errorf("set tenant: %w", err)
	}
	return nil
}

// WithPlatform runs fn in one transaction with the platform flag set (by
// app_bind_platform, a SET LOCAL), which the tenants table's dedicated
// policy admits. No tenant-owned table has such
// a policy, so this path reads and writes tenants, never their data.
//
// Like WithTenant, it runs fn again after a deadlock or serialization
// failure, so fn must be safe to repeat.
func (d *DB) WithPlatform(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return classify(d.retry(ctx, func() error {
		return d.runTx(ctx, "SELECT app_bind_platform()", fn)
	}))
}

// Unscoped runs fn outside any tenant: row-level security admits no tenant
// rows. It is for SECURITY DEFINER lookups and catalog queries.
func (d *DB) Unscoped(ctx context.Context) *gorm.DB {
	return d.gorm.WithContext(ctx)
}

// SQLState returns the SQLSTATE of the PostgreSQL error in err's chain, or
// "" when there is none.
func SQLState(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code
	}
	return ""
}

// IsUniqueViolation reports whether err is a PostgreSQL unique violation,
// optionally on the named constraint.
func IsUniqueViolation(err error, constraint ...string) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "23505" {
		return false
	}
	if len(constraint) == 0 {
		return true
	}
	name := constraintName(pg)
	for _, c := range constraint {
		if sameConstraint(name, c) {
			return true
		}
	}
	return false
}

// violatedConstraint finds the constraint a violation's message names.
var violatedConstraint = regexp.MustCompile(`violates (?:unique|foreign key|check) constraint "([^"]+)"`)

// constraintName is the constraint pg names. Citus relays a worker's error
// without the constraint field, only its message: the name is read from
// that.
func constraintName(pg *pgconn.PgError) string {
	if pg.ConstraintName != "" {
		return pg.ConstraintName
	}
	if m := violatedConstraint.FindStringSubmatch(pg.Message); m != nil {
		return m[1]
	}
	return ""
}

// sameConstraint reports whether got, a constraint name from an error,
// names the constraint want. On Citus a shard reports its own copy,
// suffixed with the shard id: want_102008.
func sameConstraint(got, want string) bool {
	shard, ok := strings.CutPrefix(got, want+"_")
	if !ok {
		return got == want
	}
	return shard != "" && strings.Trim(shard, "0123456789") == ""
}

// IsCheckViolation reports whether err is a PostgreSQL check violation.
func IsCheckViolation(err error) bool { return SQLState(err) == "23514" }

// IsForeignKeyViolation reports whether err is a PostgreSQL foreign key
// violation.
func IsForeignKeyViolation(err error) bool { return SQLState(err) == "23503" }
