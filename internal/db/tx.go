package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/fault"
)

// errRolledBack means COMMIT found the transaction already failed, so the
// server rolled it back: a statement failed and fn did not return its
// error.
var errRolledBack = errors.New("db: transaction rolled back at commit: a statement in it failed")

// errBegin marks a transaction that failed before fn ran: nothing of it
// happened, so running it again is always safe.
var errBegin = errors.New("begin")

// errConnectionLost is what a transaction that lost its connection to
// PostgreSQL (a restart, a failover, a network cut) returns, beside the
// driver's error: the request may succeed when retried, so clients are
// told 503 with Retry-After rather than 500.
var errConnectionLost = fault.New(fault.Unavailable, "the database connection was lost; retry shortly")

// connectionLost reports whether err means the connection to PostgreSQL
// failed or was ended by the server, rather than a statement failing.
func connectionLost(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false // a deadline or a caller's cancellation, not the connection
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		// Class 08: connection exception; 57P01/02/03: the server shut
		// down, crashed, or is starting.
		return strings.HasPrefix(pg.Code, "08") || pg.Code == "57P01" || pg.Code == "57P02" || pg.Code == "57P03"
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), "conn closed")
}

// classify adds errConnectionLost to an error that is a lost connection.
func classify(err error) error {
	if err == nil || !connectionLost(err) {
		return err
	}
	return fmt.Errorf("%w: %w", errConnectionLost, err)
}

// rollbackTimeout bounds the ROLLBACK of a failed transaction, which runs
// even when the request's context is done.
const rollbackTimeout = 5 * time.Second

// connTx is one transaction on a connection of its own from the pool. It
// exists for one round trip: database/sql's BeginTx sends BEGIN alone, and
// the tenant's binding would be a second trip, on every tenant
// transaction; here both go in one simple-protocol message ("BEGIN; SELECT
// app_bind_tenant('<uuid>')"). The binding's SET LOCAL runs inside the
// function, as a statement of its own: Citus forwards a SET LOCAL with the
// text of the message it came in, so one sent in this message itself
// would carry the BEGIN to the workers. It serves GORM
// as the session's connection pool and, by having Commit and Rollback,
// makes GORM treat the session as inside a transaction (a nested
// tx.Transaction uses a savepoint). Only run ends it.
//
// A connection is never returned to the pool inside a transaction: run
// ends the transaction on every path, and were it ever missed, pgx's
// stdlib discards a connection whose transaction is still open instead of
// reusing it.
type connTx struct {
	conn *sql.Conn
	// afterCommit are the functions AfterCommit registered, run in order
	// once the transaction has committed.
	afterCommit []func()
	// failed is the first PostgreSQL error a statement of the transaction
	// met, for COMMIT to report if fn carried on regardless.
	failed *pgconn.PgError
}

// note keeps err if it is the transaction's first PostgreSQL error.
func (t *connTx) note(err error) {
	var pg *pgconn.PgError
	if t.failed == nil && errors.As(err, &pg) {
		t.failed = pg
	}
}

// AfterCommit runs fn once tx, a WithTenant or WithPlatform transaction,
// has committed, and never if it rolls back (when WithTenant runs a
// transaction again, only the attempt that commits runs its functions).
// It is for effects that must follow the data, once: a metric counted per
// handled event, a notification. It reports false, and does nothing, when
// tx is not such a transaction.
func AfterCommit(tx *gorm.DB, fn func()) bool {
	t, ok := tx.Statement.ConnPool.(*connTx)
	if !ok {
		return false
	}
	t.afterCommit = append(t.afterCommit, fn)
	return true
}

// runTx runs fn in a transaction begun together with setup (one SQL
// statement without parameters, such as the tenant's app_bind_tenant call)
// and commits it when fn returns nil; otherwise it rolls back and returns
// fn's error.
func (d *DB) runTx(ctx context.Context, setup string, fn func(tx *gorm.DB) error) (err error) {
	conn, err := d.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", errBegin, err)
	}
	t := &connTx{conn: conn}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN; "+setup); err != nil {
		t.rollback(ctx) // BEGIN may have run and the setup failed
		return fmt.Errorf("%w: %w", errBegin, err)
	}
	panicked := true
	defer func() {
		if panicked {
			t.rollback(ctx)
		}
	}()
	tx := d.gorm.Session(&gorm.Session{NewDB: true, Context: ctx})
	tx.Statement.ConnPool = t
	err = fn(tx)
	panicked = false
	if err != nil {
		t.rollback(ctx)
		return err
	}
	if err := t.commit(ctx); err != nil {
		return err
	}
	t.runAfterCommit(ctx)
	return nil
}

// runAfterCommit runs the AfterCommit functions; a panicking one is logged
// and skipped, since the transaction has committed and must be reported
// so.
func (t *connTx) runAfterCommit(ctx context.Context) {
	for _, fn := range t.afterCommit {
		func() {
			defer func() {
				if r := recover(); r != nil {
					slog.ErrorContext(ctx, "db: an after-commit function panicked", "panic", r)
				}
			}()
			fn()
		}()
	}
}

// commitTimeout bounds COMMIT, which runs even when the request's context
// is done: once fn succeeded, abandoning the COMMIT midway would leave its
// outcome unknown to us while the server may well have committed.
const commitTimeout = 10 * time.Second

// commit sends COMMIT and checks the server committed.
func (t *connTx) commit(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	var tag string
	err := t.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("db: unexpected driver connection %T", dc)
		}
		ct, err := c.Conn().Exec(ctx, "COMMIT")
		tag = ct.String()
		return err
	})
	if err != nil {
		// The outcome is unknown (the reply was lost, or ctx ended while
		// waiting): the connection is in no state to be reused.
		t.discard()
		return fmt.Errorf("commit: %w", err)
	}
	if tag == "ROLLBACK" {
		if t.failed != nil {
			// fn went on after a failed statement: report that statement's
			// error (a deadlock is retried, a conflict keeps its meaning).
			return fmt.Errorf("%w: %w", errRolledBack, t.failed)
		}
		return errRolledBack
	}
	return nil
}

// rollback ends the transaction, on a context that outlives ctx briefly; a
// connection that cannot roll back is discarded, which ends its session.
func (t *connTx) rollback(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if _, err := t.conn.ExecContext(rctx, "ROLLBACK"); err != nil {
		t.discard()
	}
}

// discard marks the connection broken, so that the pool closes it instead
// of reusing it.
func (t *connTx) discard() {
	// Raw hands back the error the function returns: the mark is the point.
	if err := t.conn.Raw(func(any) error { return driver.ErrBadConn }); !errors.Is(err, driver.ErrBadConn) {
		t.conn.Close() // already closed, or closing now
	}
}

// PrepareContext implements gorm.ConnPool.
func (t *connTx) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return t.conn.PrepareContext(ctx, query)
}

// ExecContext implements gorm.ConnPool.
func (t *connTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := t.conn.ExecContext(ctx, query, args...)
	t.note(err)
	return res, err
}

// QueryContext implements gorm.ConnPool.
func (t *connTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := t.conn.QueryContext(ctx, query, args...)
	t.note(err)
	return rows, err
}

// QueryRowContext implements gorm.ConnPool.
func (t *connTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.conn.QueryRowContext(ctx, query, args...)
}

// errOwnedByRun is what a Commit or Rollback through GORM returns: the
// transaction is runTx's to end.
var errOwnedByRun = errors.New("db: the transaction ends when the WithTenant function returns; do not commit or roll back inside it")

// Commit implements gorm.TxCommitter; see errOwnedByRun.
func (t *connTx) Commit() error { return errOwnedByRun }

// Rollback implements gorm.TxCommitter; see errOwnedByRun.
func (t *connTx) Rollback() error { return errOwnedByRun }
