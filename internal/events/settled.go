package events

import (
	"context"

	"github.com/tenantd/tenantd/internal/db"
)

// Horizon is the settled position of events_position_seq for readers outside
// this package that must see rows in commit order: the audit sealer. Any
// table whose rows draw their position with next_append_position()
// (migrations/0025: the shared append lock, class 1702232067 key 0, then
// events_position_seq), as events and audit_events do, is covered: every
// row at a position at or below Settled has committed, or never will.
type Horizon struct {
	h *horizon
}

// NewHorizon returns a horizon over d. Keep one per reader: it remembers an
// observation still waiting for appenders to end.
func NewHorizon(d *db.DB) *Horizon {
	return &Horizon{h: &horizon{db: d}}
}

// Settled returns the highest position P such that every position <= P is
// committed or never will be. It only moves forward.
func (h *Horizon) Settled(ctx context.Context) (int64, error) {
	settled, _, err := h.h.advance(ctx)
	return settled, err
}
