package events_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestSubscribeBatch proves a batch subscriber gets each event exactly once,
// in stream order, with its transaction scoped to the events' tenant, in
// fewer transactions than events; and that a batch with a poison event
// falls back to one event at a time, so only the poison event is parked.
func TestSubscribeBatch(t *testing.T) {
	t.Parallel()
	rig := newDispatchRig(t, 4, newTenants(t, 3), 9, 120, "batch")
	poison := rig.appended[57]

	var (
		mu        sync.Mutex
		calls     int
		sizes     []int
		tenantsOK = true
	)
	d := events.NewDispatcher(rig.app, testLogger(), events.Options{PollInterval: 20 * time.Millisecond, BatchSize: 40,
		MaxAttempts: 2, Backoff: func(int) time.Duration { return time.Millisecond }})
	d.SubscribeBatch(rig.sub, []string{rig.typ}, func(ctx context.Context, tx *gorm.DB, evs []events.Event) error {
		mu.Lock()
		calls++
		sizes = append(sizes, len(evs))
		mu.Unlock()
		for _, e := range evs {
			if e.TenantID != evs[0].TenantID {
				mu.Lock()
				tenantsOK = false
				mu.Unlock()
			}
			if e.ID == poison.ID {
				return context.DeadlineExceeded // any error: the handler fails on this event
			}
			// The effects table's policy refuses a row of another tenant.
			if err := rig.fx.record(tx, e, "batch"); err != nil {
				return err
			}
		}
		return nil
	})
	stop := start(t, d)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return rig.fx.count(t) >= len(rig.appended)-1 && checkpoint(t, rig.owner, rig.sub) >= rig.appended[len(rig.appended)-1].Position, "every event but the poison one handled, and the checkpoint at the end"
	})
	stop()

	checkExactlyOnce(t, rig.fx.all(t), slices.Delete(slices.Clone(rig.appended), 57, 58))
	dls, err := d.DeadLetters(t.Context(), poison.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Event.ID != poison.ID {
		t.Errorf("got dead letters %+v, want only the poison event %s", dls, poison.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	if !tenantsOK {
		t.Error("got a handler call with events of two tenants, want one tenant per call")
	}
	if calls >= len(rig.appended) {
		t.Errorf("got %d handler calls for %d events, want fewer (batched)", calls, len(rig.appended))
	}
	if slices.Max(sizes) < 2 {
		t.Errorf("got batch sizes %v, want some of more than one event", sizes)
	}
}
