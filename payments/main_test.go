package payments_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/payments"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fakeOrders stands in for the orders module: targets by tenant and order.
// It reads the tenant from the transaction it is given, as the real one's
// row-level security would scope it.
type fakeOrders struct {
	mu      sync.Mutex
	targets map[[2]uuid.UUID]payments.Target
}

// PaymentTarget answers from the targets set, after checking that tx is
// bound to tenantID, as the real orders read is (row-level security).
func (o *fakeOrders) PaymentTarget(_ context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) (payments.Target, error) {
	var setting string
	if err := tx.Raw("SELECT current_setting('app.tenant_id', true)").Scan(&setting).Error; err != nil {
		return payments.Target{}, err
	}
	if bound, err := uuid.Parse(setting); err != nil || bound != tenantID {
		return payments.Target{}, fmt.Errorf("fake orders: the transaction is bound to %q, not to tenant %s", setting, tenantID)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	t, ok := o.targets[[2]uuid.UUID{tenantID, orderID}]
	if !ok {
		return payments.Target{}, payments.ErrOrderNotFound
	}
	return t, nil
}

func (o *fakeOrders) set(tenantID, orderID uuid.UUID, t payments.Target) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.targets == nil {
		o.targets = map[[2]uuid.UUID]payments.Target{}
	}
	o.targets[[2]uuid.UUID{tenantID, orderID}] = t
}

// countingGateway counts the calls that reach the gateway it wraps: the
// charges (calls) and those approved, the lookups and the refunds. Tests
// switch its faults on and off.
type countingGateway struct {
	next     payments.Gateway
	calls    atomic.Int64
	approved atomic.Int64
	lookups  atomic.Int64
	refunds  atomic.Int64

	// loseAnswers: charges are made, but their answers are lost (errFlaky).
	loseAnswers atomic.Bool
	// refundsDown: refunds fail with errFlaky without reaching the gateway.
	refundsDown atomic.Bool
	// refuseRefunds: the gateway refuses every refund (refusedByTest).
	refuseRefunds atomic.Bool
}

// refusedByTest is the failure reason of refunds refused by countingGateway.
const refusedByTest = "refused_by_test"

func (g *countingGateway) Charge(ctx context.Context, c payments.Charge) (payments.Result, error) {
	g.calls.Add(1)
	res, err := g.next.Charge(ctx, c)
	if err == nil && res.Approved {
		g.approved.Add(1)
	}
	if err == nil && g.loseAnswers.Load() {
		return payments.Result{}, errFlaky
	}
	return res, err
}

func (g *countingGateway) Get(ctx context.Context, paymentID uuid.UUID) (payments.Lookup, error) {
	g.lookups.Add(1)
	return g.next.Get(ctx, paymentID)
}

func (g *countingGateway) Void(ctx context.Context, c payments.Charge) (payments.Result, error) {
	g.lookups.Add(1)
	return g.next.Void(ctx, c)
}

func (g *countingGateway) Refund(ctx context.Context, r payments.RefundRequest) (payments.RefundResult, error) {
	g.refunds.Add(1)
	switch {
	case g.refundsDown.Load():
		return payments.RefundResult{}, errFlaky
	case g.refuseRefunds.Load():
		return payments.RefundResult{FailureReason: refusedByTest}, nil
	}
	return g.next.Refund(ctx, r)
}

// simulated returns a simulated gateway keeping its books in the package's
// database.
func simulated(t *testing.T, opts payments.SimulatedOptions) *payments.Simulated {
	t.Helper()
	return payments.NewSimulated(testenv.Get(t).OpenDB(t, 4), opts)
}

// fastRetries are resilience options for tests: short waits, and a breaker
// that trips after five failures and cools down in 100ms.
var fastRetries = payments.ResilienceOptions{
	InitialInterval: time.Millisecond,
	MaxInterval:     5 * time.Millisecond,
	MaxElapsed:      time.Second,
	AttemptTimeout:  time.Second,
	TripAfter:       5,
	OpenTimeout:     100 * time.Millisecond,
}

// fixture is a runtime-role pool, the payments service on it with a
// simulated gateway behind retries and a breaker, and the owner pool for
// setting up what the runtime role may not.
type fixture struct {
	db        *db.DB
	owner     *db.DB
	orders    *fakeOrders
	gateway   *countingGateway
	resilient *payments.Resilient
	svc       *payments.Service
}

func newFixture(t *testing.T, maxConns int) fixture {
	t.Helper()
	return newFixtureWith(t, maxConns, payments.SimulatedOptions{}, fastRetries)
}

func newFixtureWith(t *testing.T, maxConns int, sim payments.SimulatedOptions, res payments.ResilienceOptions, opts ...payments.Option) fixture {
	t.Helper()
	env := testenv.Get(t)
	d := env.OpenDB(t, maxConns)
	f := fixture{
		db:      d,
		owner:   env.OpenOwnerDB(t),
		orders:  &fakeOrders{},
		gateway: &countingGateway{next: payments.NewSimulated(d, sim)},
	}
	f.resilient = payments.NewResilient(f.gateway, res)
	f.svc = payments.NewService(d, f.orders, f.resilient, opts...)
	return f
}

// order registers a pending order of total EUR and returns its id.
func (f fixture) order(t *testing.T, tenantID uuid.UUID, total int64) uuid.UUID {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	f.orders.set(tenantID, id, payments.Target{Status: payments.OrderPending, Total: total, Currency: "EUR"})
	return id
}

// pay pays a new order of total with method and fails the test on an error.
func (f fixture) pay(t *testing.T, tenantID uuid.UUID, total int64, method string) payments.Payment {
	t.Helper()
	orderID := f.order(t, tenantID, total)
	p, err := f.svc.Pay(context.Background(), tenantID, payments.NewPayment{OrderID: orderID, Amount: total, Currency: "EUR", Method: method})
	if err != nil {
		t.Fatalf("pay with %s: %v", method, err)
	}
	return p
}

// storedEvent is an event as the tests compare it.
type storedEvent struct {
	Type    string
	Version int64
	Data    string
}

// streamEvents loads a stream's events in version order as the runtime role
// in tenantID, so row-level security applies.
func (f fixture) streamEvents(t *testing.T, tenantID uuid.UUID, streamID string) []storedEvent {
	t.Helper()
	var out []storedEvent
	err := f.db.WithTenant(context.Background(), tenantID, func(tx *gorm.DB) error {
		evs, err := events.Load(context.Background(), tx, tenantID, streamID)
		for _, e := range evs {
			if e.TenantID != tenantID || e.StreamID != streamID {
				t.Errorf("got event %s of tenant %s stream %s, want tenant %s stream %s", e.ID, e.TenantID, e.StreamID, tenantID, streamID)
			}
			out = append(out, storedEvent{Type: e.Type, Version: e.Version, Data: string(e.Data)})
		}
		return err
	})
	if err != nil {
		t.Fatalf("load stream %s: %v", streamID, err)
	}
	return out
}
