package events_test

import (
	"errors"
	"slices"
	"testing"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestNewStreamPartlyTaken proves that creating a stream (expected 0) with
// more events than an existing stream of that name has writes nothing: the
// versions the stream lacks would continue it, so Append aborts the
// transaction, and committing it fails.
func TestNewStreamPartlyTaken(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 2)
	stream := "partly-" + testenv.RandomHex(4)
	appendOne(t, app, a, stream, 0, typ, 1)

	var appendErr error
	err := app.WithTenant(t.Context(), a, func(tx *gorm.DB) error {
		_, appendErr = events.Append(t.Context(), tx, a, stream, 0,
			events.NewEvent{Type: typ, Data: 2}, events.NewEvent{Type: typ, Data: 3})
		return nil // try to commit what was written
	})
	if !errors.Is(appendErr, events.ErrVersionConflict) {
		t.Errorf("got %v from the append, want ErrVersionConflict", appendErr)
	}
	if err == nil {
		t.Error("the transaction committed, want it aborted")
	}
	inTenant(t, app, a, func(tx *gorm.DB) error {
		es, err := events.Load(t.Context(), tx, a, stream)
		if err != nil {
			return err
		}
		if got := versionsOf(es); !slices.Equal(got, []int64{1}) {
			t.Errorf("got versions %v, want [1]: the stream as it was", got)
		}
		return nil
	})
}
