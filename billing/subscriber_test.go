package billing_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
)

// appendEvent appends one event to a new stream of tenantID.
func appendEvent(t *testing.T, r *meterRig, tenantID uuid.UUID, typ string, data any) {
	t.Helper()
	err := r.app.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error {
		_, err := events.Append(t.Context(), tx, tenantID, "test-"+uuid.NewString(), 0, events.NewEvent{Type: typ, Data: data})
		return err
	})
	if err != nil {
		t.Fatalf("append %s: %v", typ, err)
	}
}

// runDispatcher runs a dispatcher with the business meters until stop is
// called.
func runDispatcher(t *testing.T, r *meterRig) (stop func()) {
	t.Helper()
	d := events.NewDispatcher(r.app, r.log, events.Options{PollInterval: 50 * time.Millisecond})
	billing.SubscribeMeters(d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatcher: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestBusinessMeters counts orders and captured payment volume from the
// event log, once per event, also across a dispatcher restart.
func TestBusinessMeters(t *testing.T) {
	r := newMeterRig(t)
	a, b := testenv.NewTenant(t, testenv.WithPlan("free")).ID, testenv.NewTenant(t, testenv.WithPlan("pro")).ID
	for range 3 {
		appendEvent(t, r, a, "order.placed", map[string]any{"order_id": uuid.New(), "total": 100, "currency": "EUR"})
	}
	appendEvent(t, r, a, "payment.succeeded", map[string]any{"payment_id": uuid.New(), "amount": 1500, "currency": "EUR"})
	appendEvent(t, r, a, "payment.succeeded", map[string]any{"payment_id": uuid.New(), "amount": 700, "currency": "USD"})
	appendEvent(t, r, a, "payment.failed", map[string]any{"payment_id": uuid.New(), "amount": 999, "currency": "EUR", "reason": "declined"})
	appendEvent(t, r, a, "payment.refunded", map[string]any{"payment_id": uuid.New(), "amount": 100, "currency": "EUR"})
	appendEvent(t, r, b, "order.placed", map[string]any{"order_id": uuid.New(), "total": 5, "currency": "EUR"})

	orders := billing.MeterKey{Meter: billing.MeterOrdersCreated}
	eur := billing.MeterKey{Meter: billing.MeterPaymentVolume, Currency: "EUR"}
	usd := billing.MeterKey{Meter: billing.MeterPaymentVolume, Currency: "USD"}
	want := map[billing.MeterKey]int64{orders: 3, eur: 1500, usd: 700}
	matches := func(id uuid.UUID, want map[billing.MeterKey]int64) bool {
		got := r.usage(t, id)
		if len(got) != len(want) {
			return false
		}
		for k, n := range want {
			if got[k] != n {
				return false
			}
		}
		return true
	}

	stop := runDispatcher(t, r)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return matches(a, want) && matches(b, map[billing.MeterKey]int64{orders: 1}), "business meters counted"
	})
	stop()

	// A restarted dispatcher goes on from its checkpoint: nothing counts twice.
	appendEvent(t, r, a, "order.placed", map[string]any{"order_id": uuid.New(), "total": 100, "currency": "EUR"})
	runDispatcher(t, r)
	want[orders] = 4
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { return matches(a, want), "the new order counted" })
	time.Sleep(300 * time.Millisecond) // room for a double count to show
	if got := r.usage(t, a); !matches(a, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	// Counts sit in the hour their event was appended.
	wrongHour := testenv.Query[int64](t, r.app, a, `SELECT count(*) FROM usage_counters u
			WHERE u.hour <> date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
			  AND u.hour <> date_trunc('hour', (now() - interval '1 hour') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'`)
	if wrongHour != 0 {
		t.Errorf("got %d counters outside the events' hour", wrongHour)
	}
}
