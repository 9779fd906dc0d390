package events_test

import (
	"testing"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/events"
)

// TestInTenant proves the helper runs fn in a transaction bound to the
// tenant (row-level security admits the tenant's append) and commits it.
func TestInTenant(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 2)
	inTenant(t, app, a, func(tx *gorm.DB) error {
		_, err := events.Append(t.Context(), tx, a, "in-tenant", 0, events.NewEvent{Type: typ, Data: 1})
		return err
	})
	var n int
	if err := app.WithTenant(t.Context(), a, func(tx *gorm.DB) error {
		es, err := events.Load(t.Context(), tx, "in-tenant")
		n = len(es)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("got %d events in the tenant's stream, want the one appended", n)
	}
}
