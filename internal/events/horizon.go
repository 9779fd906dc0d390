package events

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tenantd/tenantd/internal/db"
)

// horizon tracks the settled position: the highest position P such that
// every event at a position <= P has either committed (and is visible to any
// later statement) or never will. A reader that stops at the horizon never
// passes a position whose transaction is still in flight, so it never skips
// an event that commits out of position order.
//
// Why it holds. next_append_position() (migrations/0025, called by
// events_next_position() in an append's VALUES) takes a shared advisory
// lock (appendLockClass, 0) before it draws a position, and the lock is held
// until the transaction ends (after its commit is visible). On Citus it runs
// on the coordinator, where this reads the sequence and the lock. An observation
// reads the sequence's last_value L first and then, in a later statement,
// the transactions holding that lock. A transaction holding a position <= L
// took the lock before L was read, so at the second read it has either
// ended or is among the holders. Once none of those holders holds the lock
// any more, L is settled. Transactions that start appending later draw
// positions above L and do not matter.
//
// Transaction-id watermarks do not work here. Filtering rows on "txid <
// xmin" lets a transaction that got its xid early (it wrote its state first)
// commit a later position while a younger one holding an earlier position is
// still open. Waiting for a snapshot's xmin to pass an earlier snapshot's
// xmax fails too: xmax is latestCompletedXid + 1, not the next xid, so a
// running appender can have an xid at or above it and be in neither bound.
//
// Only appending transactions hold the horizon back, for as long as they
// stay open: keep them short. That delays delivery; it never loses an event.
type horizon struct {
	db *db.DB

	// wakes counts the wake-ups (notifications and polls) handed to
	// readers; see advanceSince.
	wakes atomic.Uint64

	mu       sync.Mutex
	settled  int64
	pending  *observation // taken, not yet settled
	computed uint64       // wakes when the last computation began (0: none yet)
}

// wake records a wake-up and returns its number, for advanceSince.
func (h *horizon) wake() uint64 { return h.wakes.Add(1) }

// advanceSince is advance computed at most once per wake-up: a reader woken
// by wake-up number n reuses the result of a computation that began after
// wake-up n was recorded (so it saw every commit that wake-up announced),
// instead of querying again. Readers woken together by one notification
// thus cost one computation, not one each.
func (h *horizon) advanceSince(ctx context.Context, n uint64) (settled int64, waiting bool, err error) {
	h.mu.Lock()
	if h.computed != 0 && n <= h.computed {
		defer h.mu.Unlock()
		return h.settled, h.pending != nil, nil
	}
	h.mu.Unlock()
	return h.advance(ctx)
}

// observation is the sequence's last value and the appenders (virtual
// transaction ids) that were running just after it was read.
type observation struct {
	last      int64
	appenders db.TextArray
}

// appendLockClass is the class of the shared advisory lock every appending
// transaction holds (next_append_position, migrations/0025).
const appendLockClass int32 = 1702232067

// appenderLocks selects the append lock's rows in pg_locks.
const appenderLocks = `FROM pg_locks
	WHERE locktype = 'advisory' AND classid = ?::oid AND objid = 0 AND objsubid = 2
	  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`

// advance returns the settled position, and whether a later observation is
// waiting for appenders to end (worth checking again soon).
func (h *horizon) advance(ctx context.Context) (settled int64, waiting bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.computed = h.wakes.Load()
	defer func() {
		if err != nil {
			h.computed = 0 // a failed computation is no result to reuse
		}
	}()
	if h.pending != nil {
		done, err := h.ended(ctx, h.pending.appenders)
		if err != nil {
			return h.settled, true, err
		}
		if !done {
			return h.settled, true, nil
		}
		h.settled = max(h.settled, h.pending.last)
		h.pending = nil
	}
	obs, err := h.observe(ctx)
	if err != nil {
		return h.settled, false, err
	}
	if obs.last <= h.settled {
		return h.settled, false, nil
	}
	if len(obs.appenders) > 0 {
		done, err := h.ended(ctx, obs.appenders)
		if err != nil {
			return h.settled, false, err
		}
		if !done {
			h.pending = &obs
			return h.settled, true, nil
		}
	}
	h.settled = obs.last
	return h.settled, false, nil
}

// observe reads last_value, then (in a later statement) the appenders. The
// order is what makes the observation sound.
func (h *horizon) observe(ctx context.Context) (observation, error) {
	var obs observation
	g := h.db.Unscoped(ctx)
	if err := g.Raw("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_position_seq").Scan(&obs.last).Error; err != nil {
		return obs, fmt.Errorf("events: read last position: %w", err)
	}
	// Row, not Scan: gorm would take a slice destination for many rows.
	if err := g.Raw("SELECT coalesce(array_agg(virtualtransaction), '{}') "+appenderLocks+" AND granted",
		appendLockClass).Row().Scan(&obs.appenders); err != nil {
		return obs, fmt.Errorf("events: read appenders: %w", err)
	}
	return obs, nil
}

// ended reports whether none of the appenders holds the append lock any
// more. Virtual transaction ids are not reused while a server runs.
func (h *horizon) ended(ctx context.Context, appenders db.TextArray) (bool, error) {
	var running bool
	if err := h.db.Unscoped(ctx).Raw("SELECT EXISTS (SELECT 1 "+appenderLocks+" AND virtualtransaction = ANY (?::text[]))",
		appendLockClass, appenders).Scan(&running).Error; err != nil {
		return false, fmt.Errorf("events: read appenders: %w", err)
	}
	return !running, nil
}
