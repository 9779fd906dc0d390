package events

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// Handler handles one event inside tx, a transaction scoped to e.TenantID
// (db.WithTenant) in which the dispatcher also records the subscriber's
// checkpoint: the handler's database effects happen exactly once. Anything
// else it does (HTTP calls, Redis) may happen more than once and must be
// idempotent. ctx carries e as the cause (WithCause) for events it appends.
type Handler func(ctx context.Context, tx *gorm.DB, e Event) error

// Options tune a Dispatcher; zero values take the defaults.
type Options struct {
	// PollInterval is how often the log is read when no notification came
	// (default 1s); also how often a replica tries to take over the
	// subscribers another replica holds.
	PollInterval time.Duration
	// BatchSize is how many events one read fetches (default 100, max 1000).
	BatchSize int
	// MaxAttempts is how often a handler is tried on one event before the
	// event is parked as a dead letter (default 5).
	MaxAttempts int
	// Backoff is the pause after the attempt-th failure (default
	// DefaultBackoff).
	Backoff func(attempt int) time.Duration
	// ListenURL is a PostgreSQL URL on which the dispatcher LISTENs for
	// appends; empty means polling only.
	ListenURL string
}

func (o Options) withDefaults() Options {
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	o.BatchSize = min(o.BatchSize, 1000)
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff
	}
	return o
}

// DefaultBackoff waits 100ms after the first failure, doubling up to 5s,
// each pause drawn from its upper half (jitter) so that replicas retrying
// together spread out. It is a pure function of the attempt, which is what
// Options.Backoff needs; cenkalti/backoff's stateful BackOff does not fit
// that shape, and the module is not a dependency of tenantd.
func DefaultBackoff(attempt int) time.Duration {
	const (
		base    = 100 * time.Millisecond
		ceiling = 5 * time.Second
	)
	d := ceiling
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 6 { // 100ms << 6 > 5s
		d = min(base<<(attempt-1), ceiling)
	}
	half := d / 2
	return half + rand.N(half+1)
}

// Dispatcher delivers the event log to named subscribers: each subscriber
// sees every event of its types once in position order (so in version order
// within a stream), its checkpoint committed with its handler's effects.
// Several replicas may run one; a subscriber runs on one replica at a time.
type Dispatcher struct {
	db   *db.DB
	log  *slog.Logger
	opts Options

	mu      sync.Mutex
	subs    []*subscription
	running bool
}

// subscription is one subscriber's registration.
type subscription struct {
	name  string
	types []string // nil = all
	h     Handler
}

// NewDispatcher returns a dispatcher reading through d.
func NewDispatcher(d *db.DB, log *slog.Logger, opts Options) *Dispatcher {
	if log == nil {
		log = slog.Default()
	}
	return &Dispatcher{db: d, log: log.With("component", "events"), opts: opts.withDefaults()}
}

// Subscribe registers h as subscriber, for events of types (all when
// empty). The name keys the checkpoint: keep it stable across releases; a
// new name starts from the beginning of the log. It panics on an empty or
// repeated name, a nil handler, or a call while Run is running.
func (d *Dispatcher) Subscribe(subscriber string, types []string, h Handler) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case subscriber == "" || len(subscriber) > 100:
		panic("events: subscriber name must be 1 to 100 bytes")
	case h == nil:
		panic("events: nil handler for " + subscriber)
	case d.running:
		panic("events: Subscribe(" + subscriber + ") while the dispatcher runs")
	case d.subscription(subscriber) != nil:
		panic("events: subscriber " + subscriber + " registered twice")
	}
	var ts []string
	if len(types) > 0 {
		ts = slices.Clone(types)
	}
	d.subs = append(d.subs, &subscription{name: subscriber, types: ts, h: h})
}

// subscription returns the named subscription or nil; d.mu must be held.
func (d *Dispatcher) subscription(name string) *subscription {
	for _, s := range d.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

// Run delivers events until ctx ends, then returns nil. It holds one pool
// connection for the subscriber leases and, while handling, one per
// subscriber; with ListenURL, one more connection outside the pool.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("events: dispatcher already running")
	}
	d.running = true
	subs := slices.Clone(d.subs)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running = false
		d.mu.Unlock()
	}()

	if err := d.createCheckpoints(ctx, subs); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	w := newWaker(subs)
	var wg sync.WaitGroup
	if d.opts.ListenURL != "" {
		wg.Go(func() { d.listen(ctx, w.wakeAll) })
	}
	d.holdLeases(ctx, subs, &horizon{db: d.db}, w)
	wg.Wait()
	return nil
}

// createCheckpoints gives each new subscriber a checkpoint at the start of
// the log.
func (d *Dispatcher) createCheckpoints(ctx context.Context, subs []*subscription) error {
	for _, s := range subs {
		if err := d.db.Unscoped(ctx).Exec(`INSERT INTO event_checkpoints (subscriber) VALUES (?)
			ON CONFLICT (subscriber) DO NOTHING`, s.name).Error; err != nil {
			return fmt.Errorf("events: create checkpoint of %s: %w", s.name, err)
		}
	}
	return nil
}

// waker fans a wake-up out to every subscriber's worker.
type waker struct{ chans map[string]chan struct{} }

func newWaker(subs []*subscription) *waker {
	w := &waker{chans: make(map[string]chan struct{}, len(subs))}
	for _, s := range subs {
		w.chans[s.name] = make(chan struct{}, 1)
	}
	return w
}

func (w *waker) wakeAll() {
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
		wait := d.opts.PollInterval
		if conn == nil {
			failures++
			wait = d.opts.Backoff(failures)
		} else {
			failures = 0
		}
		if !sleep(ctx, wait) {
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

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errLeaseLost means another worker moved this subscriber's checkpoint: this
// one must reload it (and, with leases, should not be running at all).
var errLeaseLost = errors.New("events: checkpoint moved by another worker")

// work runs subscriber s until ctx ends, restarting after failures.
func (d *Dispatcher) work(ctx context.Context, s *subscription, hz *horizon, wake <-chan struct{}) {
	failures := 0
	for {
		progressed, err := d.serve(ctx, s, hz, wake)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			failures = 0
		}
		failures++
		level := slog.LevelWarn
		if errors.Is(err, errLeaseLost) {
			level = slog.LevelInfo
		}
		d.log.Log(ctx, level, "events: subscriber stopped; restarting", "subscriber", s.name, "err", err)
		if !sleep(ctx, d.opts.Backoff(failures)) {
			return
		}
	}
}

// serve delivers to s from its checkpoint up to the settled horizon, then
// waits for a notification, the poll interval, or (while a later horizon is
// pending) a short recheck. It returns only with an error.
func (d *Dispatcher) serve(ctx context.Context, s *subscription, hz *horizon, wake <-chan struct{}) (progressed bool, err error) {
	var cp int64
	if err := d.db.Unscoped(ctx).Raw("SELECT position FROM event_checkpoints WHERE subscriber = ?", s.name).Scan(&cp).Error; err != nil {
		return false, fmt.Errorf("read checkpoint: %w", err)
	}
	recheck := time.Duration(0)
	for {
		settled, waiting, err := hz.advance(ctx)
		if err != nil {
			return progressed, err
		}
		for cp < settled {
			batch, err := d.batch(ctx, cp, settled, d.opts.BatchSize, s.types)
			if err != nil {
				return progressed, err
			}
			for _, e := range batch {
				if err := d.deliver(ctx, s, cp, e); err != nil {
					return progressed, err
				}
				cp, progressed = e.Position, true
			}
			if len(batch) < d.opts.BatchSize {
				// Nothing else of s's types up to settled: move past it.
				if err := d.moveCheckpoint(ctx, s.name, cp, settled); err != nil {
					return progressed, err
				}
				cp = settled
			}
		}
		wait := d.opts.PollInterval
		if waiting {
			// Transactions are short: look again soon, backing off.
			recheck = min(max(2*recheck, 5*time.Millisecond), 250*time.Millisecond, d.opts.PollInterval)
			wait = recheck
		} else {
			recheck = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return progressed, ctx.Err()
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// batch reads up to limit events in (after, upto] of types, across tenants.
func (d *Dispatcher) batch(ctx context.Context, after, upto int64, limit int, types []string) ([]Event, error) {
	var ts any
	if len(types) > 0 {
		ts = db.TextArray(types)
	}
	var rows []eventRow
	if err := d.db.Unscoped(ctx).Raw("SELECT "+eventColumns+" FROM events_dispatch_batch(?, ?, ?, ?::text[])",
		after, upto, limit, ts).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("read events after %d: %w", after, err)
	}
	return toEvents(rows)
}

// moveCheckpoint moves subscriber's checkpoint from `from` to `to`, if no
// other worker moved it.
func (d *Dispatcher) moveCheckpoint(ctx context.Context, subscriber string, from, to int64) error {
	res := d.db.Unscoped(ctx).Exec(`UPDATE event_checkpoints SET position = ?, updated_at = now()
		WHERE subscriber = ? AND position = ?`, to, subscriber, from)
	if res.Error != nil {
		return fmt.Errorf("move checkpoint to %d: %w", to, res.Error)
	}
	if res.RowsAffected != 1 {
		return errLeaseLost
	}
	return nil
}

// claim locks subscriber's checkpoint row in tx and checks it still reads
// from. Two workers for one subscriber (a lease lost to a broken connection)
// thus serialise here, and the later one backs off instead of handling the
// event again.
func claim(tx *gorm.DB, subscriber string, from int64) error {
	var cp []int64
	if err := tx.Raw("SELECT position FROM event_checkpoints WHERE subscriber = ? FOR UPDATE", subscriber).Scan(&cp).Error; err != nil {
		return fmt.Errorf("lock checkpoint: %w", err)
	}
	if len(cp) != 1 || cp[0] != from {
		return errLeaseLost
	}
	return nil
}

// advanceTo records in tx that subscriber is done up to position.
func advanceTo(tx *gorm.DB, subscriber string, position int64) error {
	if err := tx.Exec("UPDATE event_checkpoints SET position = ?, updated_at = now() WHERE subscriber = ?",
		position, subscriber).Error; err != nil {
		return fmt.Errorf("record checkpoint: %w", err)
	}
	return nil
}

// attemptError is a failed attempt at handling an event: the handler failed,
// or its transaction did not commit. It counts towards MaxAttempts.
type attemptError struct{ err error }

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// deliver handles e for s (whose checkpoint reads from), retrying with
// backoff and parking e as a dead letter after MaxAttempts failures. It
// returns an error only when it could not do either.
func (d *Dispatcher) deliver(ctx context.Context, s *subscription, from int64, e Event) error {
	log := d.log.With("subscriber", s.name, "tenant_id", e.TenantID, "event_id", e.ID, "type", e.Type, "position", e.Position)
	for attempt := 1; ; attempt++ {
		err := d.handleOnce(ctx, s, from, e)
		if err == nil {
			return nil
		}
		var ae *attemptError
		if isCanceled(ctx, err) || !errors.As(err, &ae) {
			return err
		}
		if attempt >= d.opts.MaxAttempts {
			if err := d.park(ctx, s, from, e, attempt, ae.err); err != nil {
				return err
			}
			log.Error("events: handler failed; event parked as a dead letter", "attempts", attempt, "err", ae.err)
			return nil
		}
		log.Warn("events: handler failed; retrying", "attempt", attempt, "err", ae.err)
		if !sleep(ctx, d.opts.Backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// handleOnce runs s's handler on e and records the checkpoint, in one
// transaction of e's tenant.
func (d *Dispatcher) handleOnce(ctx context.Context, s *subscription, from int64, e Event) error {
	claimed := false
	err := d.db.WithTenant(ctx, e.TenantID, func(tx *gorm.DB) error {
		if err := claim(tx, s.name, from); err != nil {
			return err
		}
		claimed = true
		if err := runHandler(ctx, tx, s, e); err != nil {
			return err
		}
		return advanceTo(tx, s.name, e.Position)
	})
	if err != nil && claimed {
		return &attemptError{err}
	}
	return err
}

// runHandler calls s's handler with e as the cause, turning a panic into an
// error.
func runHandler(ctx context.Context, tx *gorm.DB, s *subscription, e Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	hctx := WithCause(withActor(ctx, "subscriber:"+s.name), e)
	return s.h(hctx, tx, e)
}

// Lag returns, per subscriber of d, the age of the oldest event of its types
// it has not handled yet (0 when it is up to date).
func (d *Dispatcher) Lag(ctx context.Context) (map[string]time.Duration, error) {
	d.mu.Lock()
	subs := slices.Clone(d.subs)
	d.mu.Unlock()
	out := make(map[string]time.Duration, len(subs))
	for _, s := range subs {
		var cp []int64
		if err := d.db.Unscoped(ctx).Raw("SELECT position FROM event_checkpoints WHERE subscriber = ?", s.name).Scan(&cp).Error; err != nil {
			return nil, fmt.Errorf("events: lag of %s: %w", s.name, err)
		}
		var after int64
		if len(cp) == 1 {
			after = cp[0]
		}
		var ts any
		if len(s.types) > 0 {
			ts = db.TextArray(s.types)
		}
		var ages []float64
		if err := d.db.Unscoped(ctx).Raw(`SELECT extract(epoch FROM now() - created_at)::float8
			FROM events_dispatch_batch(?, 9223372036854775807, 1, ?::text[])`, after, ts).Scan(&ages).Error; err != nil {
			return nil, fmt.Errorf("events: lag of %s: %w", s.name, err)
		}
		var lag time.Duration
		if len(ages) == 1 && ages[0] > 0 {
			lag = time.Duration(ages[0] * float64(time.Second))
		}
		out[s.name] = lag
	}
	return out, nil
}
