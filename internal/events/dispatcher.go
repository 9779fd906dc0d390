package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/wait"
)

// Handler handles one event inside tx, a transaction scoped to e.TenantID
// (db.WithTenant) in which the dispatcher also records the subscriber's
// checkpoint: the handler's database effects happen exactly once. Anything
// else it does (HTTP calls, Redis) may happen more than once and must be
// idempotent. ctx carries e as the cause (WithCause) for events it appends.
type Handler func(ctx context.Context, tx *gorm.DB, e Event) error

// BatchHandler handles, in one transaction, consecutive events delivered
// together (up to Options.BatchSize), in position order: the events of one
// tenant at a time, with tx scoped to that tenant (the dispatcher switches
// the tenant between groups). The subscriber's checkpoint moves past the
// whole batch in the same transaction. For handlers whose cost is per
// transaction rather than per event, such as counters.
type BatchHandler func(ctx context.Context, tx *gorm.DB, tenantEvents []Event) error

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
	// Backoff is the pause after the attempt-th failure of a handler on one
	// event (default DefaultBackoff). It also paces restarts after database
	// failures and LISTEN reconnects.
	Backoff func(attempt int) time.Duration
	// ListenURL is a PostgreSQL URL on which the dispatcher LISTENs for
	// appends; empty means polling only.
	ListenURL string
	// Debounce is the shortest time between two wake-ups by notification
	// (default 2ms): a burst of commits wakes the workers once, and each
	// wake-up computes the horizon once for all of them.
	Debounce time.Duration
	// OnPark, when set, is called after an event is parked as a dead
	// letter (for metrics).
	OnPark func(subscriber string)
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
	if o.Debounce <= 0 {
		o.Debounce = 2 * time.Millisecond
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
	types []string     // nil = all
	h     Handler      // one event at a time
	batch BatchHandler // nil, or h's batched form (see SubscribeBatch)
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
	if h == nil {
		panic("events: nil handler for " + subscriber)
	}
	d.subscribe(&subscription{name: subscriber, h: h}, types)
}

// SubscribeBatch is Subscribe for a handler that takes the events of a
// whole delivered batch in one transaction. When a batch fails, its events
// are retried one at a time (h called with one event each), so a poison
// event is parked alone, as with Subscribe.
func (d *Dispatcher) SubscribeBatch(subscriber string, types []string, h BatchHandler) {
	if h == nil {
		panic("events: nil handler for " + subscriber)
	}
	one := func(ctx context.Context, tx *gorm.DB, e Event) error { return h(ctx, tx, []Event{e}) }
	d.subscribe(&subscription{name: subscriber, h: one, batch: h}, types)
}

func (d *Dispatcher) subscribe(sub *subscription, types []string) {
	subscriber := sub.name
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case subscriber == "" || len(subscriber) > 100:
		panic("events: subscriber name must be 1 to 100 bytes")
	case d.running:
		panic("events: Subscribe(" + subscriber + ") while the dispatcher runs")
	case d.subscription(subscriber) != nil:
		panic("events: subscriber " + subscriber + " registered twice")
	}
	if len(types) > 0 {
		sub.types = slices.Clone(types)
	}
	d.subs = append(d.subs, sub)
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
	if len(subs) == 0 {
		<-ctx.Done()
		return nil
	}
	hz := &horizon{db: d.db}
	w := newWaker(subs, hz)
	var wg sync.WaitGroup
	if d.opts.ListenURL != "" {
		wg.Go(func() { d.listen(ctx, w.wakeAll) })
	}
	d.holdLeases(ctx, subs, hz, w)
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
		if !wait.Sleep(ctx, d.opts.Backoff(failures)) {
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
	woken := hz.wake() // a start is a wake-up of its own
	for {
		settled, waiting, err := hz.advanceSince(ctx, woken)
		if err != nil {
			return progressed, err
		}
		for cp < settled {
			batch, err := d.batch(ctx, cp, settled, d.opts.BatchSize, s.types)
			if err != nil {
				return progressed, err
			}
			delivered := false
			if s.batch != nil && len(batch) > 0 {
				if delivered, err = d.deliverBatch(ctx, s, cp, batch); err != nil {
					return progressed, err
				}
				if delivered {
					cp, progressed = batch[len(batch)-1].Position, true
				}
			}
			for _, e := range batch {
				if delivered {
					break
				}
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
			// Notified: the waker numbered this wake-up before sending it,
			// so the latest number covers it.
			woken = hz.wakes.Load()
		case <-t.C:
			woken = hz.wake() // a poll looks afresh
		}
		t.Stop()
	}
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
		if err := d.db.Worker().Unscoped(ctx).Raw(`SELECT extract(epoch FROM now() - created_at)::float8
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
