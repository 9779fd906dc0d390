package events

import (
	"context"
	"fmt"
	"sync"

	"github.com/tenantd/tenantd/internal/db"
)

// horizon tracks the settled position: the highest position P such that
// every event at a position <= P has either committed (and is visible to any
// later statement) or never will. A reader that stops at the horizon never
// passes a position whose transaction is still in flight, so it never skips
// an event that commits out of position order.
//
// Why it holds. The events_before_insert trigger gives each row its
// transaction id before it draws a position, so a transaction that holds
// position p had an xid before p was drawn. An observation reads the
// sequence's last_value L first, and then, in a later statement, the xmax X
// of a fresh snapshot (the first xid not yet assigned). Every position <= L
// was drawn before the read of L, by a transaction whose xid was assigned
// before that, so below X. Once the oldest running xid (the xmin of a current
// snapshot) is >= X, every such transaction has ended: L is settled.
//
// Filtering rows by "txid < xmin" alone is not enough: a transaction that got
// its xid early (it wrote something else first) can draw a later position
// and commit while a younger transaction holding an earlier position is
// still open; its rows pass that filter and a reader would move past the
// open one's position for good.
//
// Only transactions with an xid (those that wrote) hold the horizon back,
// for as long as they stay open, anywhere in the cluster: keep write
// transactions short (idle_in_transaction_session_timeout helps). This
// delays delivery; it never loses an event.
type horizon struct {
	db *db.DB

	mu      sync.Mutex
	settled int64
	pending *observation // taken, not yet settled
}

// observation is the sequence's last value and an xid bound taken after it.
type observation struct {
	last int64
	xmax string // xid8 as text
}

// advance returns the settled position, and whether a later observation is
// waiting for transactions to end (worth checking again soon).
func (h *horizon) advance(ctx context.Context) (settled int64, waiting bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pending != nil {
		done, err := h.ended(ctx, h.pending.xmax)
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
	done, err := h.ended(ctx, obs.xmax)
	if err != nil {
		return h.settled, false, err
	}
	if !done {
		h.pending = &obs
		return h.settled, true, nil
	}
	h.settled = obs.last
	return h.settled, false, nil
}

// observe reads last_value, then (in a later statement, so a later snapshot)
// the xid bound. The order is what makes the observation sound.
func (h *horizon) observe(ctx context.Context) (observation, error) {
	var obs observation
	g := h.db.Unscoped(ctx)
	if err := g.Raw("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_position_seq").Scan(&obs.last).Error; err != nil {
		return obs, fmt.Errorf("events: read last position: %w", err)
	}
	if err := g.Raw("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").Scan(&obs.xmax).Error; err != nil {
		return obs, fmt.Errorf("events: read xid bound: %w", err)
	}
	return obs, nil
}

// ended reports whether every transaction with an xid below xmax has ended.
func (h *horizon) ended(ctx context.Context, xmax string) (bool, error) {
	var done bool
	if err := h.db.Unscoped(ctx).Raw("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= ?::xid8", xmax).Scan(&done).Error; err != nil {
		return false, fmt.Errorf("events: read oldest running xid: %w", err)
	}
	return done, nil
}
