package events

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// Feed serves a tenant's event log to clients that follow it by position
// (GET /v1/events?after=…, the SSE stream). It reads only up to the settled
// horizon, so a client that asks again with its last position never misses
// an event whose transaction commits out of position order.
type Feed struct {
	db *db.DB
	hz *horizon
}

// NewFeed returns a Feed on d.
func NewFeed(d *db.DB) *Feed { return &Feed{db: d, hz: &horizon{db: d}} }

// Read returns the tenant's events with after < position <= the settled
// horizon, in position order, up to limit (1–1000), only of types when given.
func (f *Feed) Read(ctx context.Context, tenantID uuid.UUID, after int64, limit int, types []string) (out []Event, err error) {
	settled, _, err := f.hz.advance(ctx)
	if err != nil {
		return nil, err
	}
	if settled <= after {
		return nil, nil
	}
	limit = min(max(limit, 1), 1000)
	err = f.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		// tenant_id by name, not only by row-level security: Citus routes
		// the read to the tenant's shard.
		out, err = selectEvents(ctx, tx, "tenant_id = ? AND position > ? AND position <= ?",
			[]any{tenantID, after, settled}, types, limit)
		if err != nil {
			return fmt.Errorf("read event feed: %w", err)
		}
		return nil
	})
	return out, err
}
