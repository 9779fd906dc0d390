package payments_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/payments"
)

// The tests that call Reconcile do not run in parallel: Reconcile works
// across tenants, so it would settle the payments other tests have in
// flight with a gateway of its own.

// errDatabaseDown is what the write hook fails with, as an unreachable
// database would.
var errDatabaseDown = errors.New("database unreachable")

// writesDown returns a Service option whose writes of gateway answers all
// fail, and who gives up after a short while.
func writesDown() []payments.Option {
	return []payments.Option{
		payments.WithWriteFor(150 * time.Millisecond),
		payments.WithWriteHook(func(context.Context) error { return errDatabaseDown }),
	}
}

// replica returns another Service on its own pool and gateway instance, as
// another tenantd process would have.
func (f fixture) replica(t *testing.T) *payments.Service {
	t.Helper()
	d := testenv.Get(t).OpenDB(t, 4)
	return payments.NewService(d, f.orders, payments.NewResilient(payments.NewSimulated(d, payments.SimulatedOptions{}), fastRetries))
}

// backdate makes a payment look processing for a minute, past the
// reconcile age.
func (f fixture) backdate(t *testing.T, tenantID, paymentID uuid.UUID) {
	t.Helper()
	f.ownerExec(t, tenantID, `UPDATE payments SET created_at = created_at - interval '1 minute' WHERE id = ?`, paymentID)
}

// dueNow makes a pending refund due to the reconciler at once.
func (f fixture) dueNow(t *testing.T, tenantID, refundID uuid.UUID) {
	t.Helper()
	f.ownerExec(t, tenantID, `UPDATE refunds SET attempt_after = now() - interval '1 second' WHERE id = ?`, refundID)
}

func (f fixture) ownerExec(t *testing.T, tenantID uuid.UUID, sql string, args ...any) {
	t.Helper()
	err := f.owner.WithTenant(context.Background(), tenantID, func(tx *gorm.DB) error {
		res := tx.Exec(sql, args...)
		if res.Error == nil && res.RowsAffected != 1 {
			t.Errorf("%s: got %d rows, want 1", sql, res.RowsAffected)
		}
		return res.Error
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ownerCount runs a count query as the owner in tenantID.
func (f fixture) ownerCount(t *testing.T, tenantID uuid.UUID, sql string, args ...any) int64 {
	t.Helper()
	return testenv.Query[int64](t, f.owner, tenantID, sql, args...)
}

// gatewayRefunds counts the refunds the simulated provider has booked
// against a charge, by status.
func (f fixture) gatewayRefunds(t *testing.T, paymentID uuid.UUID) map[string]int {
	t.Helper()
	var rows []struct {
		Status string
		N      int
	}
	err := f.owner.Unscoped(context.Background()).Raw(`SELECT status, count(*) AS n FROM sim_gateway_refunds
		WHERE charge_key = ? GROUP BY status`, paymentID).Scan(&rows).Error
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out
}

// refundsOf reads a payment's refunds as stored, oldest first.
func (f fixture) refundsOf(t *testing.T, tenantID, paymentID uuid.UUID) []storedRefund {
	t.Helper()
	out := testenv.Query[[]storedRefund](t, f.owner, tenantID, `SELECT id, amount, status, reason, coalesce(failure_reason, '') AS failure_reason
			FROM refunds WHERE payment_id = ? ORDER BY id`, paymentID)
	return out
}

type storedRefund struct {
	ID            uuid.UUID
	Amount        int64
	Status        string
	Reason        string
	FailureReason string
}

// types lists the types of a payment's events.
func (f fixture) types(t *testing.T, tenantID, paymentID uuid.UUID) []string {
	t.Helper()
	var out []string
	for _, e := range f.streamEvents(t, tenantID, payments.StreamID(paymentID)) {
		out = append(out, e.Type)
	}
	return out
}

// onlyPayment returns the one payment of an order.
func (f fixture) onlyPayment(t *testing.T, tenantID, orderID uuid.UUID) payments.Payment {
	t.Helper()
	list, err := f.svc.List(context.Background(), tenantID, payments.ListQuery{OrderID: orderID})
	if err != nil || len(list) != 1 {
		t.Fatalf("got payments %+v (%v) of order %s, want one", list, err, orderID)
	}
	return list[0]
}

// TestReconcileSettlesLostOutcome: the gateway decided a charge, but its
// answer could not be written (the database stayed down past the write
// deadline). The payment stays processing, untouched while younger than
// the reconcile age; then the reconciler settles it from the gateway's
// record with the one outcome event Pay would have appended, and a second
// pass changes nothing.
func TestReconcileSettlesLostOutcome(t *testing.T) {
	f := newFixtureWith(t, 4, payments.SimulatedOptions{}, fastRetries, writesDown()...)
	reconciler := f.replica(t)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	tests := []struct {
		method     string
		wantStatus payments.Status
		wantReason payments.FailureReason
		wantEvent  string
	}{
		{payments.MethodCard, payments.StatusSucceeded, "", payments.EventSucceeded},
		{payments.MethodCardDeclined, payments.StatusFailed, payments.ReasonDeclined, payments.EventFailed},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			orderID := f.order(t, tenantID, 1500)
			_, err := f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: orderID, Amount: 1500, Currency: "EUR", Method: tt.method})
			if !errors.Is(err, errDatabaseDown) {
				t.Fatalf("pay: got %v, want %v", err, errDatabaseDown)
			}
			p := f.onlyPayment(t, tenantID, orderID)
			if p.Status != payments.StatusProcessing {
				t.Fatalf("got status %s after the failed write, want processing", p.Status)
			}
			if l, err := f.resilient.Get(ctx, p.ID); err != nil || !l.Found {
				t.Fatalf("gateway lookup: got %+v, %v, want the charge found", l, err)
			}

			if _, err := reconciler.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			if got := f.onlyPayment(t, tenantID, orderID); got.Status != payments.StatusProcessing {
				t.Fatalf("got status %s before the reconcile age, want processing", got.Status)
			}

			f.backdate(t, tenantID, p.ID)
			n, err := reconciler.Reconcile(ctx)
			if err != nil || n.Payments < 1 {
				t.Fatalf("reconcile: got %+v, %v, want at least one payment settled", n, err)
			}
			got := f.onlyPayment(t, tenantID, orderID)
			if got.Status != tt.wantStatus || got.FailureReason != tt.wantReason || got.Version != 2 {
				t.Errorf("got %s/%s version %d, want %s/%s version 2", got.Status, got.FailureReason, got.Version, tt.wantStatus, tt.wantReason)
			}
			if tt.wantStatus == payments.StatusSucceeded && (got.Captured != 1500 || got.GatewayReference == "") {
				t.Errorf("got captured %d reference %q, want 1500 and the gateway's reference", got.Captured, got.GatewayReference)
			}
			if _, err := reconciler.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			if types := f.types(t, tenantID, p.ID); !slices.Equal(types, []string{tt.wantEvent}) {
				t.Errorf("got events %v, want [%s]", types, tt.wantEvent)
			}
		})
	}
}

// TestReconcileChargeNeverSeen: a payment left processing whose charge
// never reached the gateway is failed once past the reconcile age, with
// gateway_unavailable, which leaves its order payable.
func TestReconcileChargeNeverSeen(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	orderID := f.order(t, tenantID, 700)
	id := uuid.Must(uuid.NewV7())
	f.ownerExec(t, tenantID, `INSERT INTO payments (tenant_id, id, order_id, status, amount, currency, payment_method, created_at)
		VALUES (?, ?, ?, 'processing', 700, 'EUR', 'card', now() - interval '1 minute')`, tenantID, id, orderID)

	n, err := f.svc.Reconcile(ctx)
	if err != nil || n.Payments < 1 {
		t.Fatalf("reconcile: got %+v, %v, want at least one payment settled", n, err)
	}
	got, err := f.svc.Get(ctx, tenantID, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != payments.StatusFailed || got.FailureReason != payments.ReasonGatewayUnavailable {
		t.Errorf("got %s/%s, want failed/gateway_unavailable", got.Status, got.FailureReason)
	}
	types, data := f.outcomeEvents(t, tenantID, id)
	if !slices.Equal(types, []string{payments.EventFailed}) || data[0].Reason != payments.ReasonGatewayUnavailable {
		t.Errorf("got events %v %+v, want one payment.failed with reason gateway_unavailable", types, data)
	}
	if n := f.gateway.calls.Load(); n != 0 {
		t.Errorf("got %d charges, want none: the reconciler only looks charges up", n)
	}
	if _, err := f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: orderID, Amount: 700, Currency: "EUR", Method: payments.MethodCard}); err != nil {
		t.Errorf("pay the order again: got %v, want it payable", err)
	}
}

// TestWriteRetriedUntilDatabaseBack: while writing the outcome fails, Pay
// keeps trying with backoff, and settles the payment once the database is
// back, with one outcome event.
func TestWriteRetriedUntilDatabaseBack(t *testing.T) {
	t.Parallel()
	var attempts atomic.Int64
	hook := payments.WithWriteHook(func(context.Context) error {
		if attempts.Add(1) <= 3 {
			return errDatabaseDown
		}
		return nil
	})
	f := newFixtureWith(t, 4, payments.SimulatedOptions{}, fastRetries, hook)
	tenantID := testenv.NewTenant(t).ID
	p := f.pay(t, tenantID, 900, payments.MethodCard)
	if p.Status != payments.StatusSucceeded {
		t.Errorf("got status %s, want succeeded", p.Status)
	}
	if n := attempts.Load(); n != 4 {
		t.Errorf("got %d write attempts, want 4", n)
	}
	if types := f.types(t, tenantID, p.ID); !slices.Equal(types, []string{payments.EventSucceeded}) {
		t.Errorf("got events %v, want one payment.succeeded", types)
	}
}

// TestChargeAnswerLost: the gateway takes the money but every answer is
// lost in transit; before giving the payment up as unavailable, Pay asks
// the gateway and records the charge it made.
func TestChargeAnswerLost(t *testing.T) {
	t.Parallel()
	opts := fastRetries
	opts.MaxElapsed = 50 * time.Millisecond
	opts.TripAfter = 1000
	f := newFixtureWith(t, 4, payments.SimulatedOptions{}, opts)
	f.gateway.loseAnswers.Store(true)
	tenantID := testenv.NewTenant(t).ID
	p := f.pay(t, tenantID, 1200, payments.MethodCard)
	if p.Status != payments.StatusSucceeded || p.Captured != 1200 {
		t.Errorf("got %s captured %d, want succeeded captured 1200", p.Status, p.Captured)
	}
	if f.gateway.calls.Load() < 2 || f.gateway.lookups.Load() != 1 {
		t.Errorf("got %d charges and %d lookups, want retried charges and one lookup", f.gateway.calls.Load(), f.gateway.lookups.Load())
	}
}

// TestReconcilersAtOnce: several replicas reconcile the same stale
// payments at the same time; each outcome is written, and its event
// appended, exactly once.
func TestReconcilersAtOnce(t *testing.T) {
	f := newFixtureWith(t, 8, payments.SimulatedOptions{}, fastRetries, writesDown()...)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	const payCount = 8
	var ids []uuid.UUID
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range payCount {
		wg.Go(func() {
			method := payments.MethodCard
			if i%2 == 1 {
				method = payments.MethodCardDeclined
			}
			orderID := f.order(t, tenantID, 100)
			if _, err := f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: orderID, Amount: 100, Currency: "EUR", Method: method}); !errors.Is(err, errDatabaseDown) {
				t.Errorf("pay: got %v, want %v", err, errDatabaseDown)
				return
			}
			p := f.onlyPayment(t, tenantID, orderID)
			mu.Lock()
			ids = append(ids, p.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, id := range ids {
		f.backdate(t, tenantID, id)
	}

	const replicas = 4
	settled := make([]int, replicas)
	start := make(chan struct{})
	for i := range replicas {
		r := f.replica(t)
		wg.Go(func() {
			<-start
			for range 3 {
				n, err := r.Reconcile(ctx)
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
				}
				settled[i] += n.Payments
			}
		})
	}
	close(start)
	wg.Wait()

	total := 0
	for _, n := range settled {
		total += n
	}
	if total != payCount {
		t.Errorf("got %d payments settled by %d replicas (%v), want %d", total, replicas, settled, payCount)
	}
	for _, id := range ids {
		p, err := f.svc.Get(ctx, tenantID, id)
		if err != nil {
			t.Fatal(err)
		}
		if p.Status == payments.StatusProcessing || p.Version != 2 {
			t.Errorf("payment %s: got %s version %d, want settled once (version 2)", id, p.Status, p.Version)
		}
		if types := f.types(t, tenantID, id); len(types) != 1 {
			t.Errorf("payment %s: got events %v, want exactly one outcome", id, types)
		}
	}
}

// TestPendingRefundReconciled: a refund the gateway could not take stays
// pending, its amount held; the reconciler leaves it to its request for
// the reconcile age, then sends it once the gateway is back, once.
func TestPendingRefundReconciled(t *testing.T) {
	opts := fastRetries
	opts.MaxElapsed = 30 * time.Millisecond
	opts.TripAfter = 1000
	f := newFixtureWith(t, 4, payments.SimulatedOptions{}, opts)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	p := f.pay(t, tenantID, 1000, payments.MethodCard)

	f.gateway.refundsDown.Store(true)
	r, err := f.svc.Refund(ctx, tenantID, p.ID, payments.NewRefund{Amount: 400})
	if err != nil || r.Status != payments.RefundPending {
		t.Fatalf("refund while the gateway is down: got %+v, %v, want pending", r, err)
	}
	if got, _ := f.svc.Get(ctx, tenantID, p.ID); got.Refunded != 400 {
		t.Errorf("got refunded %d while pending, want 400 held", got.Refunded)
	}
	if _, err := f.svc.Refund(ctx, tenantID, p.ID, payments.NewRefund{Amount: 601}); !errors.Is(err, payments.ErrRefundTooLarge) {
		t.Errorf("refund past what a pending refund holds: got %v, want %v", err, payments.ErrRefundTooLarge)
	}
	f.gateway.refundsDown.Store(false)

	if _, err := f.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.refundsOf(t, tenantID, p.ID); len(got) != 1 || got[0].Status != "pending" {
		t.Fatalf("got refunds %+v before the request's lease ended, want one pending", got)
	}

	f.dueNow(t, tenantID, r.ID)
	n, err := f.svc.Reconcile(ctx)
	if err != nil || n.Refunds < 1 {
		t.Fatalf("reconcile: got %+v, %v, want the refund sent", n, err)
	}
	if _, err := f.svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.refundsOf(t, tenantID, p.ID); len(got) != 1 || got[0].Status != "succeeded" {
		t.Errorf("got refunds %+v, want one succeeded", got)
	}
	if got := f.gatewayRefunds(t, p.ID); got["succeeded"] != 1 || len(got) != 1 {
		t.Errorf("got gateway refunds %v, want one succeeded", got)
	}
	if got, _ := f.svc.Get(ctx, tenantID, p.ID); got.Refunded != 400 {
		t.Errorf("got refunded %d, want 400", got.Refunded)
	}
	want := []string{payments.EventSucceeded, payments.EventRefunded}
	if types := f.types(t, tenantID, p.ID); !slices.Equal(types, want) {
		t.Errorf("got events %v, want %v", types, want)
	}
}

// TestRefundRefused: a refund the gateway refuses fails with its reason,
// appends payment.refund_failed, and its amount is refundable again.
func TestRefundRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	p := f.pay(t, tenantID, 1000, payments.MethodCard)

	f.gateway.refuseRefunds.Store(true)
	r, err := f.svc.Refund(ctx, tenantID, p.ID, payments.NewRefund{Amount: 400})
	if err != nil || r.Status != payments.RefundFailed || r.FailureReason != refusedByTest {
		t.Fatalf("got %+v, %v, want failed with %q", r, err, refusedByTest)
	}
	if got, _ := f.svc.Get(ctx, tenantID, p.ID); got.Refunded != 0 {
		t.Errorf("got refunded %d after a refused refund, want 0", got.Refunded)
	}
	f.gateway.refuseRefunds.Store(false)
	if r, err := f.svc.Refund(ctx, tenantID, p.ID, payments.NewRefund{Amount: 1000}); err != nil || r.Status != payments.RefundSucceeded {
		t.Errorf("refund all after the refusal: got %+v, %v, want succeeded", r, err)
	}
	want := []string{payments.EventSucceeded, payments.EventRefundFailed, payments.EventRefunded}
	if types := f.types(t, tenantID, p.ID); !slices.Equal(types, want) {
		t.Errorf("got events %v, want %v", types, want)
	}
}

// TestRefundCancelledOrder: the saga asks, in its transaction, to refund a
// payment that succeeded for a cancelled order, twice (an event delivered
// again). One refund of what is left is recorded and audited; the
// reconciler sends it to the gateway once.
func TestRefundCancelledOrder(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	p := f.pay(t, tenantID, 1000, payments.MethodCard)
	if r, err := f.svc.Refund(ctx, tenantID, p.ID, payments.NewRefund{Amount: 300}); err != nil || r.Status != payments.RefundSucceeded {
		t.Fatalf("refund part by hand: got %+v, %v", r, err)
	}
	ask := func() {
		t.Helper()
		err := f.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
			return f.svc.RefundCancelledOrder(ctx, tx, tenantID, p.ID, "reservation_expired")
		})
		if err != nil {
			t.Fatalf("refund for the cancelled order: %v", err)
		}
	}
	ask()
	ask()
	got := f.refundsOf(t, tenantID, p.ID)
	if len(got) != 2 || got[1].Reason != "order_cancelled" || got[1].Amount != 700 || got[1].Status != "pending" {
		t.Fatalf("got refunds %+v, want the hand refund and one pending order_cancelled refund of 700", got)
	}
	auto := got[1].ID
	requested := `SELECT count(*) FROM audit_events WHERE action = ? AND resource = ?`
	if n := f.ownerCount(t, tenantID, requested, payments.ActionRefundRequested, "refund:"+auto.String()); n != 1 {
		t.Errorf("got %d %s audit events, want 1", n, payments.ActionRefundRequested)
	}

	for range 2 {
		if _, err := f.svc.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ask() // once more after it was sent: still nothing new
	got = f.refundsOf(t, tenantID, p.ID)
	if len(got) != 2 || got[1].ID != auto || got[1].Status != "succeeded" {
		t.Errorf("got refunds %+v, want the order_cancelled refund succeeded, no other", got)
	}
	if g := f.gatewayRefunds(t, p.ID); g["succeeded"] != 2 || len(g) != 1 {
		t.Errorf("got gateway refunds %v, want two succeeded (by hand and for the order)", g)
	}
	if n := f.ownerCount(t, tenantID, requested, payments.ActionRefundSucceeded, "refund:"+auto.String()); n != 1 {
		t.Errorf("got %d %s audit events, want 1", n, payments.ActionRefundSucceeded)
	}
	actors := testenv.Query[[]string](t, f.owner, tenantID, `SELECT DISTINCT actor FROM audit_events WHERE resource = ?`, "refund:"+auto.String())
	if !slices.Equal(actors, []string{audit.SystemActor}) {
		t.Errorf("got actors %v, want [%s]", actors, audit.SystemActor)
	}
	want := []string{payments.EventSucceeded, payments.EventRefunded, payments.EventRefunded}
	if types := f.types(t, tenantID, p.ID); !slices.Equal(types, want) {
		t.Errorf("got events %v, want %v", types, want)
	}
	if got, _ := f.svc.Get(ctx, tenantID, p.ID); got.Refunded != 1000 {
		t.Errorf("got refunded %d, want 1000", got.Refunded)
	}
}

// TestSimulatedKeepsBooks: the simulated provider's record of charges and
// refunds outlives the gateway instance, as a real provider's outlives a
// tenantd restart: a new instance on another pool finds the charge,
// answers a repeated charge and refund the same, and keeps refunds within
// the charge.
func TestSimulatedKeepsBooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	first := simulated(t, payments.SimulatedOptions{})
	c := charge(payments.MethodCard)
	res, err := first.Charge(ctx, c)
	if err != nil || !res.Approved {
		t.Fatalf("charge: got %+v, %v", res, err)
	}
	refund := payments.RefundRequest{RefundID: uuid.Must(uuid.NewV7()), PaymentID: c.PaymentID, Amount: 60, Currency: "EUR"}
	rr, err := first.Refund(ctx, refund)
	if err != nil || !rr.Succeeded || rr.Reference == "" {
		t.Fatalf("refund: got %+v, %v", rr, err)
	}

	restarted := simulated(t, payments.SimulatedOptions{})
	if l, err := restarted.Get(ctx, c.PaymentID); err != nil || !l.Found || l.Result != res {
		t.Errorf("get after restart: got %+v, %v, want found %+v", l, err, res)
	}
	if again, err := restarted.Charge(ctx, c); err != nil || again != res {
		t.Errorf("charge again after restart: got %+v, %v, want %+v", again, err, res)
	}
	if again, err := restarted.Refund(ctx, refund); err != nil || again != rr {
		t.Errorf("refund again after restart: got %+v, %v, want %+v", again, err, rr)
	}
	tooMuch := payments.RefundRequest{RefundID: uuid.Must(uuid.NewV7()), PaymentID: c.PaymentID, Amount: 41, Currency: "EUR"}
	if got, err := restarted.Refund(ctx, tooMuch); err != nil || got.Succeeded || got.FailureReason != payments.SimulatedRefundTooLarge {
		t.Errorf("refund past the charge: got %+v, %v, want refused with %s", got, err, payments.SimulatedRefundTooLarge)
	}
	if l, err := restarted.Get(ctx, uuid.Must(uuid.NewV7())); err != nil || l.Found {
		t.Errorf("get an unknown charge: got %+v, %v, want not found", l, err)
	}
	declined := charge(payments.MethodCardDeclined)
	if _, err := first.Charge(ctx, declined); err != nil {
		t.Fatal(err)
	}
	if l, err := restarted.Get(ctx, declined.PaymentID); err != nil || !l.Found || l.Result.Approved || l.Result.DeclineReason != "card_declined" {
		t.Errorf("get a declined charge: got %+v, %v, want found and declined", l, err)
	}
}

// lateGateway answers every charge with a transient error while the charge
// itself still reaches the gateway behind it some time later, as a charge
// stuck in a slow network would.
type lateGateway struct {
	payments.Gateway
	late    atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	landed  []payments.Result // what the late charges got
	landErr []error
}

func (g *lateGateway) Charge(ctx context.Context, c payments.Charge) (payments.Result, error) {
	if !g.late.Load() {
		return g.Gateway.Charge(ctx, c)
	}
	g.wg.Go(func() {
		time.Sleep(200 * time.Millisecond) // the point: the gateway answers late
		res, err := g.Gateway.Charge(context.Background(), c)
		g.mu.Lock()
		defer g.mu.Unlock()
		g.landed, g.landErr = append(g.landed, res), append(g.landErr, err)
	})
	return payments.Result{}, errFlaky
}

// TestLateChargeIsRefused: a payment is only given up after its key is
// closed at the gateway (Void), so a charge still on its way when Pay gave
// up is refused when it lands, and the customer, who pays again, is
// charged once.
func TestLateChargeIsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	lg := &lateGateway{Gateway: payments.NewSimulated(f.db, payments.SimulatedOptions{})}
	lg.late.Store(true)
	opts := fastRetries
	opts.MaxElapsed = 50 * time.Millisecond
	opts.TripAfter = 1000
	svc := payments.NewService(f.db, f.orders, payments.NewResilient(lg, opts))
	tenantID := testenv.NewTenant(t).ID
	orderID := f.order(t, tenantID, 900)
	first, err := svc.Pay(t.Context(), tenantID, payments.NewPayment{OrderID: orderID, Amount: 900, Currency: "EUR", Method: payments.MethodCard})
	if !errors.Is(err, payments.ErrGatewayUnavailable) || first.Status != payments.StatusFailed {
		t.Fatalf("got %s, %v; want failed and ErrGatewayUnavailable", first.Status, err)
	}
	lg.wg.Wait() // every late charge has landed
	lg.mu.Lock()
	for i, res := range lg.landed {
		if lg.landErr[i] != nil || res.Approved {
			t.Errorf("late charge %d: got %+v, %v; want it refused (the key was voided)", i, res, lg.landErr[i])
		}
	}
	if len(lg.landed) == 0 {
		t.Error("got no late charge, want the test to send some")
	}
	lg.mu.Unlock()

	lg.late.Store(false)
	second, err := svc.Pay(t.Context(), tenantID, payments.NewPayment{OrderID: orderID, Amount: 900, Currency: "EUR", Method: payments.MethodCard})
	if err != nil || second.Status != payments.StatusSucceeded {
		t.Fatalf("pay again: got %s, %v; want succeeded", second.Status, err)
	}
	approved := f.ownerCount(t, tenantID, `SELECT count(*) FROM sim_gateway_charges
		WHERE idempotency_key IN (?, ?) AND status = 'approved'`, first.ID, second.ID)
	if approved != 1 {
		t.Errorf("got %d approved charges for the order, want 1", approved)
	}
}
