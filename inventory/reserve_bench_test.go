package inventory_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/inventory"
)

// BenchmarkReserve measures a two-line reservation in a transaction of its
// own (BEGIN with the tenant binding, Reserve, COMMIT), as order placement
// makes it, one at a time on one tenant.
func BenchmarkReserve(b *testing.B) {
	f := newFixture(b, 2)
	tn := testenv.NewTenant(b).ID
	lines := []inventory.Line{
		{ProductID: f.product(b, tn, "B-1", 1<<40).ID, Quantity: 1},
		{ProductID: f.product(b, tn, "B-2", 1<<40).ID, Quantity: 2},
	}
	ctx := context.Background()
	expires := time.Now().Add(time.Hour)
	b.ResetTimer()
	for range b.N {
		err := f.db.WithTenant(ctx, tn, func(tx *gorm.DB) error {
			held, err := f.svc.Reserve(ctx, tx, tn, uuid.New(), lines, expires)
			if err == nil && len(held) != len(lines) {
				b.Errorf("got %d reservations, want %d", len(held), len(lines))
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
