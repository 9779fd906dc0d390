package events

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/wait"
)

// listenerName is the application_name of the LISTEN connection, so
// operators can tell it apart in pg_stat_activity.
const listenerName = "tenantd-events-listener"

// listen LISTENs on the events channel and calls wake for every
// notification, reconnecting with backoff until ctx ends. While it is down,
// polling still delivers.
func (d *Dispatcher) listen(ctx context.Context, wake func()) {
	failures := 0
	for {
		connected, err := d.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		if connected {
			failures = 0
		}
		failures++
		d.log.Warn("events: LISTEN connection lost; polling until it is back", "err", err)
		if !wait.Sleep(ctx, d.opts.Backoff(failures)) {
			return
		}
	}
}

// listenOnce holds one LISTEN connection until it fails or ctx ends.
func (d *Dispatcher) listenOnce(ctx context.Context, wake func()) (connected bool, err error) {
	conn, err := db.Connect(ctx, d.opts.ListenURL, listenerName)
	if err != nil {
		return false, fmt.Errorf("listen connection: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := conn.Close(cctx); err != nil {
			d.log.Debug("events: close LISTEN connection", "err", err)
		}
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	// Appends may have committed while nobody listened.
	wake()
	last := time.Now()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		// Debounce: wake the workers at most once per interval. The
		// notifications of a burst of commits queue up meanwhile and are
		// covered by this one wake-up.
		if pause := d.opts.Debounce - time.Since(last); pause > 0 && !wait.Sleep(ctx, pause) {
			return true, ctx.Err()
		}
		wake()
		last = time.Now()
	}
}
