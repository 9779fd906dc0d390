package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/orders"
)

// TestSagaOutcomesCountAfterCommit runs sagaOutcomes under a real event
// dispatcher whose first delivery of each event rolls back after the
// handler ran (as a failed commit or a lost checkpoint would): the event is
// delivered again, and tenantd_saga_outcomes_total counts it once, after
// the redelivery committed.
func TestSagaOutcomesCountAfterCommit(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	d := env.OpenDB(t, 8)
	tenant := testenv.NewTenant(t).ID
	suffix := randomSuffix(t)
	err := d.WithTenant(context.Background(), tenant, func(tx *gorm.DB) error {
		if _, err := events.Append(context.Background(), tx, tenant, "order-"+suffix+"-1", 0,
			events.NewEvent{Type: orders.EventCompleted, Data: map[string]any{"order_id": uuid.New()}}); err != nil {
			return err
		}
		_, err := events.Append(context.Background(), tx, tenant, "order-"+suffix+"-2", 0,
			events.NewEvent{Type: orders.EventCancelled, Data: orders.CancelledEvent{OrderID: uuid.New(), Reason: "payment_declined"}})
		return err
	})
	if err != nil {
		t.Fatalf("append events: %v", err)
	}

	m := obs.NewMetrics()
	count := sagaOutcomes(m)
	errRollback := errors.New("the delivery's transaction rolls back")
	var (
		mu         sync.Mutex
		deliveries = map[uuid.UUID]int{}
	)
	delivered := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range deliveries {
			n += c
		}
		return n
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dispatcher := events.NewDispatcher(d, log, events.Options{PollInterval: 50 * time.Millisecond,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond }})
	// The log is shared with the package's other tests: count only this
	// tenant's events.
	dispatcher.Subscribe("metrics-saga-test-"+suffix, []string{orders.EventCompleted, orders.EventCancelled},
		func(ctx context.Context, tx *gorm.DB, e events.Event) error {
			if e.TenantID != tenant {
				return nil
			}
			if err := count(ctx, tx, e); err != nil {
				return err
			}
			mu.Lock()
			deliveries[e.ID]++
			first := deliveries[e.ID] == 1
			mu.Unlock()
			if first {
				return errRollback
			}
			return nil
		})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dispatcher.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := delivered()
		return n >= 4, fmt.Sprintf("got %d deliveries, want 4 (each event twice)", n)
	})
	want := map[string]float64{"completed": 1, "cancelled_payment_declined": 1}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) { return countsAre(t, m, want), fmt.Sprintf("saga counts, want %v", want) })
	// Counts are made when a transaction commits, before WithTenant
	// returns: the rolled-back deliveries had their chance already.
	for outcome, n := range want {
		if got := sagaCount(t, m, outcome); got != n {
			t.Errorf("%s: got %v counted after a rolled-back delivery and its redelivery, want %v", outcome, got, n)
		}
	}
}

// countsAre reports whether the saga counter reads want.
func countsAre(t *testing.T, m *obs.Metrics, want map[string]float64) bool {
	for outcome, n := range want {
		if sagaCount(t, m, outcome) != n {
			return false
		}
	}
	return true
}

// sagaCount reads tenantd_saga_outcomes_total{outcome}.
func sagaCount(t *testing.T, m *obs.Metrics, outcome string) float64 {
	t.Helper()
	var metric dto.Metric
	if err := m.SagaOutcomes.WithLabelValues(outcome).Write(&metric); err != nil {
		t.Fatalf("read counter: %v", err)
	}
	return metric.GetCounter().GetValue()
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}
