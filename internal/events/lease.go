package events

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"github.com/tenantd/tenantd/internal/wait"
	"log/slog"
)

// waker fans a wake-up out to every subscriber's worker, numbering it in
// the horizon so that the workers it wakes compute the horizon once.
type waker struct {
	hz    *horizon
	chans map[string]chan struct{}
}

func newWaker(subs []*subscription, hz *horizon) *waker {
	w := &waker{hz: hz, chans: make(map[string]chan struct{}, len(subs))}
	for _, s := range subs {
		w.chans[s.name] = make(chan struct{}, 1)
	}
	return w
}

func (w *waker) wakeAll() {
	w.hz.wake()
	for _, c := range w.chans {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// worker is a running subscriber worker.
type worker struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// holdLeases keeps, on one dedicated connection, a session advisory lock per
// subscriber this replica works for, and runs a worker for each lock held.
// Locks it cannot take yet (another replica holds them) are tried again
// every PollInterval; a dead replica's connection closes and frees its
// locks. If the lease connection fails, every worker stops and the leases
// are taken anew.
func (d *Dispatcher) holdLeases(ctx context.Context, subs []*subscription, hz *horizon, w *waker) {
	sqlDB, err := d.db.Unscoped(ctx).DB()
	if err != nil {
		d.log.Error("events: no connection pool", "err", err)
		return
	}
	workers := make(map[string]*worker)
	stopAll := func() {
		for name, wk := range workers {
			wk.cancel()
			<-wk.done
			delete(workers, name)
		}
	}
	var conn *sql.Conn
	drop := func() {
		stopAll()
		if conn != nil {
			discard(conn)
			conn = nil
		}
	}
	defer drop()

	failures := 0
	for {
		if conn != nil {
			if err := conn.PingContext(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				d.log.Warn("events: lease connection lost; stopping workers", "err", err)
				drop()
			}
		}
		if conn == nil {
			if conn, err = sqlDB.Conn(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				d.log.Warn("events: no lease connection", "err", err)
				conn = nil
			}
		}
		if conn != nil {
			var leaseErr error
			for _, s := range subs {
				if _, ok := workers[s.name]; ok {
					continue
				}
				var ok bool
				if leaseErr = conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1, hashtext($2))",
					leaseLockClass, s.name).Scan(&ok); leaseErr != nil {
					break
				}
				if ok {
					wctx, cancel := context.WithCancel(ctx)
					wk := &worker{cancel: cancel, done: make(chan struct{})}
					workers[s.name] = wk
					go func() {
						defer close(wk.done)
						d.work(wctx, s, hz, w.chans[s.name])
					}()
				}
			}
			if leaseErr != nil && ctx.Err() == nil {
				d.log.Warn("events: take lease", "err", leaseErr)
				drop()
			}
		}
		pause := d.opts.PollInterval
		if conn == nil {
			failures++
			pause = d.opts.Backoff(failures)
		} else {
			failures = 0
		}
		if !wait.Sleep(ctx, pause) {
			return
		}
	}
}

// discard closes conn's session, which releases its advisory locks, instead
// of returning it to the pool still holding them.
func discard(conn *sql.Conn) {
	if err := conn.Raw(func(any) error { return driver.ErrBadConn }); err != nil && !errors.Is(err, driver.ErrBadConn) {
		// Raw failed before it could mark the connection bad: it is already closed.
		return
	}
	if err := conn.Close(); err != nil && !errors.Is(err, sql.ErrConnDone) {
		slog.Debug("events: close lease connection", "err", err)
	}
}
