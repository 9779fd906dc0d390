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
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/plugin/opentelemetry/tracing"
)

// DB is the runtime connection pool.
type DB struct {
	gorm *gorm.DB
	sql  *sql.DB
	// beforeCommit, when set, runs at the end of every WithTenant
	// transaction (see SetBeforeCommit).
	beforeCommit BeforeCommit
}

// BeforeCommit is a hook that WithTenant runs in each of its transactions
// after fn succeeded and just before COMMIT, on the same tx and with the same
// ctx, so that it can add rows that commit or roll back with fn's (the audit
// trail's per-request entry). An error rolls the transaction back and is
// returned by WithTenant. The hook may return after, which WithTenant then
// calls once the transaction has ended, telling it whether it committed.
type BeforeCommit func(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID) (after func(committed bool), err error)

// SetBeforeCommit installs the pool's one BeforeCommit hook (nil removes
// it). Call it while wiring, before the pool is used concurrently. The hook
// runs for every tenant transaction, so it must return at once when it has
// nothing to do.
func (d *DB) SetBeforeCommit(hook BeforeCommit) { d.beforeCommit = hook }

// Options tune the pool.
type Options struct {
	MaxConns int
	// Tracing adds an OpenTelemetry span to every query (statement text
	// only, no bound values).
	Tracing bool
}

// Open connects to url and checks the connection.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	sqlDB, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 20
	}
	sqlDB.SetMaxOpenConns(opts.MaxConns)
	sqlDB.SetMaxIdleConns(opts.MaxConns)
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
	if opts.Tracing {
		if err := g.Use(tracing.NewPlugin(tracing.WithoutMetrics(), tracing.WithoutQueryVariables(), tracing.WithDBSystem("postgresql"))); err != nil {
			sqlDB.Close()
			return nil, fmt.Errorf("gorm tracing: %w", err)
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return &DB{gorm: g, sql: sqlDB}, nil
}

// Close closes the pool.
func (d *DB) Close() error { return d.sql.Close() }

// Ping checks the database answers.
func (d *DB) Ping(ctx context.Context) error { return d.sql.PingContext(ctx) }

// Stats reports the pool's statistics.
func (d *DB) Stats() sql.DBStats { return d.sql.Stats() }

// ErrNoTenant is returned when WithTenant is called without a tenant.
var ErrNoTenant = errors.New("db: no tenant given")

// WithTenant runs fn in one transaction in which row-level security admits
// only tenantID's rows. The tenant is set with a transaction-local
// set_config, so it can never outlive the transaction on a pooled connection.
// fn must run every statement on tx. The BeforeCommit hook, if set, runs
// after fn in the same transaction.
func (d *DB) WithTenant(ctx context.Context, tenantID uuid.UUID, fn func(tx *gorm.DB) error) error {
	if tenantID == uuid.Nil {
		return ErrNoTenant
	}
	var after func(committed bool)
	err := d.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := SetTenant(tx, tenantID); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		if d.beforeCommit == nil {
			return nil
		}
		var err error
		after, err = d.beforeCommit(ctx, tx, tenantID)
		return err
	})
	if after != nil {
		after(err == nil)
	}
	return err
}

// SetTenant sets the tenant for the rest of the transaction tx. Only platform
// work that acts for a tenant it has just created needs it directly.
func SetTenant(tx *gorm.DB, tenantID uuid.UUID) error {
	if tenantID == uuid.Nil {
		return ErrNoTenant
	}
	if err := tx.Exec("SELECT set_config('app.tenant_id', ?, true)", tenantID.String()).Error; err != nil {
		return fmt.Errorf("set tenant: %w", err)
	}
	return nil
}

// WithPlatform runs fn in one transaction with the platform flag set, which
// the tenants table's dedicated policy admits. No tenant-owned table has such
// a policy, so this path reads and writes tenants, never their data.
func (d *DB) WithPlatform(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return d.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT set_config('app.platform', 'on', true)").Error; err != nil {
			return fmt.Errorf("set platform scope: %w", err)
		}
		return fn(tx)
	})
}

// Unscoped runs fn outside any tenant: row-level security admits no tenant
// rows. It is for SECURITY DEFINER lookups and catalog queries.
func (d *DB) Unscoped(ctx context.Context) *gorm.DB {
	return d.gorm.WithContext(ctx)
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
	for _, c := range constraint {
		if pg.ConstraintName == c {
			return true
		}
	}
	return false
}

// IsCheckViolation reports whether err is a PostgreSQL check violation.
func IsCheckViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23514"
}

// IsForeignKeyViolation reports whether err is a PostgreSQL foreign key
// violation.
func IsForeignKeyViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23503"
}
