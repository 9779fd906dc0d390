package payments_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/payments"
)

// outcomeEvents reads a payment's stream and decodes its events' data as
// outcomes, returning the types too.
func (f fixture) outcomeEvents(t *testing.T, tenantID, paymentID uuid.UUID) ([]string, []payments.Outcome) {
	t.Helper()
	var types []string
	var data []payments.Outcome
	for _, e := range f.streamEvents(t, tenantID, payments.StreamID(paymentID)) {
		var o payments.Outcome
		if err := json.Unmarshal([]byte(e.Data), &o); err != nil {
			t.Fatalf("decode %s data %s: %v", e.Type, e.Data, err)
		}
		types = append(types, e.Type)
		data = append(data, o)
	}
	return types, data
}

func TestPay(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID

	tests := []struct {
		method     string
		wantStatus payments.Status
		wantReason payments.FailureReason
		wantCalls  int64 // calls that reach the gateway
	}{
		{payments.MethodCard, payments.StatusSucceeded, "", 1},
		{payments.MethodCardDeclined, payments.StatusFailed, payments.ReasonDeclined, 1},
		{payments.MethodCardError, payments.StatusSucceeded, "", payments.DefaultSimulatedFailTimes + 1},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			// Subtests share the fixture's call counter: run in sequence.
			before := f.gateway.calls.Load()
			orderID := f.order(t, tenantID, 2599)
			p, err := f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: orderID, Amount: 2599, Currency: "EUR", Method: tt.method})
			if err != nil {
				t.Fatalf("pay: %v", err)
			}
			if got := f.gateway.calls.Load() - before; got != tt.wantCalls {
				t.Errorf("got %d gateway calls, want %d", got, tt.wantCalls)
			}
			var captured int64
			if tt.wantStatus == payments.StatusSucceeded {
				captured = 2599
			}
			want := payments.Payment{
				ID: p.ID, TenantID: tenantID, OrderID: orderID, Status: tt.wantStatus, Amount: 2599, Currency: "EUR",
				Method: tt.method, FailureReason: tt.wantReason, DeclineReason: p.DeclineReason, GatewayReference: p.GatewayReference,
				Captured: captured, Refunded: 0, Version: 2, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
			}
			if p != want {
				t.Errorf("got %+v, want %+v", p, want)
			}
			if p.ID.Version() != 7 {
				t.Errorf("got id version %d, want 7", p.ID.Version())
			}
			if tt.wantStatus == payments.StatusSucceeded && p.GatewayReference == "" {
				t.Error("got no gateway reference for a succeeded payment, want one")
			}
			got, err := f.svc.Get(ctx, tenantID, p.ID)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if got != p {
				t.Errorf("got stored %+v, want %+v", got, p)
			}

			wantType := payments.EventSucceeded
			if tt.wantStatus == payments.StatusFailed {
				wantType = payments.EventFailed
			}
			types, data := f.outcomeEvents(t, tenantID, p.ID)
			wantData := payments.Outcome{PaymentID: p.ID, OrderID: orderID, Amount: 2599, Currency: "EUR", Reason: tt.wantReason}
			if !slices.Equal(types, []string{wantType}) || len(data) != 1 || data[0] != wantData {
				t.Errorf("got events %v %+v, want [%s] [%+v]", types, data, wantType, wantData)
			}
		})
	}
}

func TestPayEventRawData(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	tenantID := testenv.NewTenant(t).ID
	declined := f.pay(t, tenantID, 500, payments.MethodCardDeclined)
	evs := f.streamEvents(t, tenantID, payments.StreamID(declined.ID))
	if len(evs) != 1 || evs[0].Version != 1 {
		t.Fatalf("got events %+v, want one at version 1", evs)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(evs[0].Data), &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"payment_id": declined.ID.String(), "order_id": declined.OrderID.String(),
		"amount": float64(500), "currency": "EUR", "reason": "declined",
	}
	if len(raw) != len(want) {
		t.Errorf("got data %v, want %v", raw, want)
	}
	for k, v := range want {
		if raw[k] != v {
			t.Errorf("got data[%s] = %v, want %v", k, raw[k], v)
		}
	}
}

func TestPayValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	tenantID := testenv.NewTenant(t).ID
	orderID := f.order(t, tenantID, 100)
	tests := []struct {
		name string
		in   payments.NewPayment
		want []string
	}{
		{"no order", payments.NewPayment{Amount: 100, Currency: "EUR", Method: "card"}, []string{"order_id"}},
		{"zero amount", payments.NewPayment{OrderID: orderID, Currency: "EUR", Method: "card"}, []string{"amount"}},
		{"negative amount", payments.NewPayment{OrderID: orderID, Amount: -100, Currency: "EUR", Method: "card"}, []string{"amount"}},
		{"lower-case currency", payments.NewPayment{OrderID: orderID, Amount: 100, Currency: "eur", Method: "card"}, []string{"currency"}},
		{"unknown method", payments.NewPayment{OrderID: orderID, Amount: 100, Currency: "EUR", Method: "cash"}, []string{"payment_method"}},
		{"everything", payments.NewPayment{}, []string{"amount", "currency", "order_id", "payment_method"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.Pay(context.Background(), tenantID, tt.in)
			code, fields := testenv.FaultFields(err)
			if code != fault.Validation || !slices.Equal(fields, tt.want) {
				t.Errorf("got %s %v, want %s %v", code, fields, fault.Validation, tt.want)
			}
		})
	}
	if n := f.gateway.calls.Load(); n != 0 {
		t.Errorf("got %d gateway calls, want none for invalid payments", n)
	}
}

func TestPayOrderChecks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	tests := []struct {
		name       string
		target     payments.Target
		amount     int64
		currency   string
		wantCode   fault.Code
		wantFields []string
	}{
		{"amount below total", payments.Target{Status: "pending", Total: 1000, Currency: "EUR"}, 999, "EUR", fault.AmountMismatch, []string{"amount"}},
		{"amount above total", payments.Target{Status: "pending", Total: 1000, Currency: "EUR"}, 1001, "EUR", fault.AmountMismatch, []string{"amount"}},
		{"other currency", payments.Target{Status: "pending", Total: 1000, Currency: "EUR"}, 1000, "USD", fault.AmountMismatch, []string{"currency"}},
		{"both", payments.Target{Status: "pending", Total: 1000, Currency: "EUR"}, 5, "USD", fault.AmountMismatch, []string{"amount", "currency"}},
		{"completed order", payments.Target{Status: "completed", Total: 1000, Currency: "EUR"}, 1000, "EUR", fault.OrderNotPayable, nil},
		{"cancelled order", payments.Target{Status: "cancelled", Total: 1000, Currency: "EUR"}, 1000, "EUR", fault.OrderNotPayable, nil},
		{"unknown order", payments.Target{}, 1000, "EUR", fault.NotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orderID := uuid.Must(uuid.NewV7())
			if tt.target.Status != "" {
				f.orders.set(tenantID, orderID, tt.target)
			}
			_, err := f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: orderID, Amount: tt.amount, Currency: tt.currency, Method: "card"})
			code, fields := testenv.FaultFields(err)
			if code != tt.wantCode || !slices.Equal(fields, tt.wantFields) {
				t.Errorf("got %s %v (%v), want %s %v", code, fields, err, tt.wantCode, tt.wantFields)
			}
			list, err := f.svc.List(ctx, tenantID, payments.ListQuery{OrderID: orderID})
			if err != nil || len(list) != 0 {
				t.Errorf("got payments %+v (%v), want none recorded", list, err)
			}
		})
	}
	if n := f.gateway.calls.Load(); n != 0 {
		t.Errorf("got %d gateway calls, want none", n)
	}
}

// TestOnePaymentPerOrder proves an order with a succeeded or declined
// payment refuses another one before the gateway is called.
func TestOnePaymentPerOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	for _, method := range []string{payments.MethodCard, payments.MethodCardDeclined} {
		t.Run(method, func(t *testing.T) {
			first := f.pay(t, tenantID, 700, method)
			calls := f.gateway.calls.Load()
			_, err := f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: first.OrderID, Amount: 700, Currency: "EUR", Method: payments.MethodCard})
			if !errors.Is(err, payments.ErrOrderHasPayment) || fault.CodeOf(err) != fault.OrderNotPayable {
				t.Errorf("got %v, want %v", err, payments.ErrOrderHasPayment)
			}
			if n := f.gateway.calls.Load() - calls; n != 0 {
				t.Errorf("got %d gateway calls, want none", n)
			}
		})
	}
}

// TestConcurrentPayments races 20 payments of one order: exactly one is
// charged, once, and the others are refused.
func TestConcurrentPayments(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, 20, payments.SimulatedOptions{Latency: 20 * time.Millisecond}, fastRetries)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	orderID := f.order(t, tenantID, 4200)

	errs := testenv.Race(20, func(int) error {
		_, err := f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: orderID, Amount: 4200, Currency: "EUR", Method: payments.MethodCard})
		return err
	})
	if succeeded := testenv.Succeeded(t, errs, payments.ErrOrderHasPayment); succeeded != 1 {
		t.Errorf("got %d payments through, want 1", succeeded)
	}
	if calls, approved := f.gateway.calls.Load(), f.gateway.approved.Load(); calls != 1 || approved != 1 {
		t.Errorf("got %d gateway calls and %d charges, want 1 and 1", calls, approved)
	}
	rows := testenv.Query[[]struct{ Status string }](t, f.owner, tenantID, "SELECT status FROM payments WHERE order_id = ?", orderID)
	if len(rows) != 1 || rows[0].Status != "succeeded" {
		t.Errorf("got payment rows %+v, want exactly one succeeded", rows)
	}
}

// TestCircuitBreaker trips the breaker with a gateway that keeps failing:
// the payment is recorded as failed with gateway_unavailable and answered
// with ErrGatewayUnavailable; while open, payments fail at once without
// reaching the gateway; after the cool-down a payment succeeds and closes
// it. The order of the unavailable payment stays payable.
func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	// Long enough that a loaded machine still answers the open breaker
	// before it half-opens.
	const coolDown = 2 * time.Second
	opts := fastRetries
	opts.TripAfter = 3
	opts.OpenTimeout = coolDown
	f := newFixtureWith(t, 4, payments.SimulatedOptions{FailTimes: -1}, opts)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID

	orderID := f.order(t, tenantID, 990)
	p, err := f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: orderID, Amount: 990, Currency: "EUR", Method: payments.MethodCardError})
	if !errors.Is(err, payments.ErrGatewayUnavailable) || fault.CodeOf(err) != fault.GatewayUnavailable {
		t.Fatalf("got %v, want %v", err, payments.ErrGatewayUnavailable)
	}
	if p.Status != payments.StatusFailed || p.FailureReason != payments.ReasonGatewayUnavailable {
		t.Errorf("got payment %s/%s, want failed/gateway_unavailable", p.Status, p.FailureReason)
	}
	if n := f.gateway.calls.Load(); n != 3 {
		t.Errorf("got %d gateway calls, want 3 before the breaker opened", n)
	}
	if s := f.resilient.State(); s != gobreaker.StateOpen {
		t.Fatalf("got breaker %s, want open", s)
	}
	types, data := f.outcomeEvents(t, tenantID, p.ID)
	if !slices.Equal(types, []string{payments.EventFailed}) || data[0].Reason != payments.ReasonGatewayUnavailable {
		t.Errorf("got events %v %+v, want one payment.failed with reason gateway_unavailable", types, data)
	}

	// Open: a good card fails at once and the gateway is not called.
	other := f.order(t, tenantID, 100)
	start := time.Now()
	_, err = f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: other, Amount: 100, Currency: "EUR", Method: payments.MethodCard})
	if !errors.Is(err, payments.ErrGatewayUnavailable) {
		t.Errorf("got %v, want %v while open", err, payments.ErrGatewayUnavailable)
	}
	if elapsed := time.Since(start); elapsed >= coolDown {
		t.Errorf("got an answer after %v, want it before the cool-down of %v", elapsed, coolDown)
	}
	if n := f.gateway.calls.Load(); n != 3 {
		t.Errorf("got %d gateway calls, want still 3 while open", n)
	}

	// After the cool-down the same order, still pending, is paid.
	waitState(t, f.resilient, gobreaker.StateHalfOpen, 10*coolDown)
	paid, err := f.svc.Pay(ctx, tenantID, payments.NewPayment{OrderID: orderID, Amount: 990, Currency: "EUR", Method: payments.MethodCard})
	if err != nil || paid.Status != payments.StatusSucceeded {
		t.Fatalf("got %+v, %v after the cool-down, want succeeded", paid, err)
	}
	if s := f.resilient.State(); s != gobreaker.StateClosed {
		t.Errorf("got breaker %s, want closed after a success", s)
	}
	list, err := f.svc.List(ctx, tenantID, payments.ListQuery{OrderID: orderID})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []payments.Status
	for _, p := range list {
		statuses = append(statuses, p.Status)
	}
	if want := []payments.Status{payments.StatusFailed, payments.StatusSucceeded}; !slices.Equal(statuses, want) {
		t.Errorf("got payments %v of the order, want %v", statuses, want)
	}
}

// TestGatewayError records a permanent gateway error as a failed payment
// with reason gateway_error, which leaves the order payable.
func TestGatewayError(t *testing.T) {
	t.Parallel()
	env := newFixture(t, 2)
	permanent := gatewayFunc(func(context.Context, payments.Charge) (payments.Result, error) {
		return payments.Result{}, payments.Permanent(errors.New("invalid merchant"))
	})
	svc := payments.NewService(env.db, env.orders, payments.NewResilient(permanent, fastRetries))
	tenantID := testenv.NewTenant(t).ID
	orderID := env.order(t, tenantID, 300)
	p, err := svc.Pay(context.Background(), tenantID, payments.NewPayment{OrderID: orderID, Amount: 300, Currency: "EUR", Method: "card"})
	if err != nil {
		t.Fatalf("pay: %v", err)
	}
	if p.Status != payments.StatusFailed || p.FailureReason != payments.ReasonGatewayError {
		t.Errorf("got %s/%s, want failed/gateway_error", p.Status, p.FailureReason)
	}
	if _, err := env.svc.Pay(context.Background(), tenantID, payments.NewPayment{OrderID: orderID, Amount: 300, Currency: "EUR", Method: "card"}); err != nil {
		t.Errorf("pay again: got %v, want the order still payable", err)
	}
}

func TestRefunds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	p := f.pay(t, tenantID, 1000, payments.MethodCard)

	steps := []struct {
		name         string
		amount       int64
		wantCode     fault.Code // "" for success
		wantRefunded int64      // the payment's refunded total after the step
	}{
		{"partial", 300, "", 300},
		{"zero", 0, fault.Validation, 300},
		{"negative", -1, fault.Validation, 300},
		{"more than what is left", 701, fault.Conflict, 300},
		{"the rest", 700, "", 1000},
		{"anything more", 1, fault.Conflict, 1000},
	}
	var refunds []payments.Refund
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r, err := f.svc.Refund(ctx, tenantID, p.ID, payments.NewRefund{Amount: s.amount})
			if got := codeOrEmpty(err); got != s.wantCode {
				t.Fatalf("got %q (%v), want %q", got, err, s.wantCode)
			}
			if err == nil {
				want := payments.Refund{ID: r.ID, TenantID: tenantID, PaymentID: p.ID, Amount: s.amount, Currency: "EUR",
					Status: payments.RefundSucceeded, Reason: payments.RefundRequested, GatewayReference: r.GatewayReference,
					CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
				if r != want || r.GatewayReference == "" {
					t.Errorf("got %+v, want %+v with the gateway's reference", r, want)
				}
				refunds = append(refunds, r)
			}
			got, err := f.svc.Get(ctx, tenantID, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Refunded != s.wantRefunded {
				t.Errorf("got refunded %d, want %d", got.Refunded, s.wantRefunded)
			}
		})
	}

	evs := f.streamEvents(t, tenantID, payments.StreamID(p.ID))
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	wantTypes := []string{payments.EventSucceeded, payments.EventRefunded, payments.EventRefunded}
	if !slices.Equal(types, wantTypes) {
		t.Fatalf("got events %v, want %v", types, wantTypes)
	}
	for i, e := range evs[1:] {
		var got payments.Refunded
		if err := json.Unmarshal([]byte(e.Data), &got); err != nil {
			t.Fatal(err)
		}
		total := []int64{300, 1000}[i]
		want := payments.Refunded{PaymentID: p.ID, OrderID: p.OrderID, RefundID: refunds[i].ID, Amount: refunds[i].Amount,
			Currency: "EUR", TotalRefunded: total, Reason: payments.RefundRequested}
		if got != want {
			t.Errorf("got refund event %+v, want %+v", got, want)
		}
	}

	t.Run("a failed payment", func(t *testing.T) {
		declined := f.pay(t, tenantID, 500, payments.MethodCardDeclined)
		_, err := f.svc.Refund(ctx, tenantID, declined.ID, payments.NewRefund{Amount: 1})
		if !errors.Is(err, payments.ErrNotRefundable) || fault.CodeOf(err) != fault.Conflict {
			t.Errorf("got %v, want %v", err, payments.ErrNotRefundable)
		}
	})
	t.Run("an unknown payment", func(t *testing.T) {
		_, err := f.svc.Refund(ctx, tenantID, uuid.Must(uuid.NewV7()), payments.NewRefund{Amount: 1})
		if !errors.Is(err, payments.ErrNotFound) {
			t.Errorf("got %v, want %v", err, payments.ErrNotFound)
		}
	})
}

// codeOrEmpty is err's fault code, or "" for no error.
func codeOrEmpty(err error) fault.Code {
	if err == nil {
		return ""
	}
	return fault.CodeOf(err)
}

// TestConcurrentRefunds races refunds that together ask for twice the
// captured amount: exactly the captured amount is refunded.
func TestConcurrentRefunds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 20)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	p := f.pay(t, tenantID, 1000, payments.MethodCard)

	errs := testenv.Race(20, func(int) error {
		_, err := f.svc.Refund(ctx, tenantID, p.ID, payments.NewRefund{Amount: 100})
		return err
	})
	ok := testenv.Succeeded(t, errs, payments.ErrRefundTooLarge)
	if ok != 10 {
		t.Errorf("got %d refunds through, want 10", ok)
	}
	sums := testenv.Query[struct{ Refunds, Refunded int64 }](t, f.owner, tenantID, `SELECT (SELECT coalesce(sum(amount), 0) FROM refunds WHERE payment_id = ?) AS refunds,
			(SELECT refunded FROM payments WHERE id = ?) AS refunded`, p.ID, p.ID)
	if sums.Refunds != 1000 || sums.Refunded != 1000 {
		t.Errorf("got refunds summing to %d and refunded %d, want 1000 and 1000", sums.Refunds, sums.Refunded)
	}
	if evs := f.streamEvents(t, tenantID, payments.StreamID(p.ID)); len(evs) != 11 {
		t.Errorf("got %d events, want 1 outcome and 10 refunds", len(evs))
	}
}

// TestTenantIsolation proves a tenant can neither see, list, refund nor pay
// for another tenant's payments and orders.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	ctx := context.Background()
	a, b := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	p := f.pay(t, a, 800, payments.MethodCard)

	if _, err := f.svc.Get(ctx, b, p.ID); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("get: got %v, want %v", err, payments.ErrNotFound)
	}
	if _, err := f.svc.Refund(ctx, b, p.ID, payments.NewRefund{Amount: 100}); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("refund: got %v, want %v", err, payments.ErrNotFound)
	}
	if list, err := f.svc.List(ctx, b, payments.ListQuery{}); err != nil || len(list) != 0 {
		t.Errorf("list: got %d payments (%v), want none", len(list), err)
	}
	if list, err := f.svc.List(ctx, b, payments.ListQuery{OrderID: p.OrderID}); err != nil || len(list) != 0 {
		t.Errorf("list by order: got %d payments (%v), want none", len(list), err)
	}
	_, err := f.svc.Pay(ctx, b, payments.NewPayment{OrderID: p.OrderID, Amount: 800, Currency: "EUR", Method: "card"})
	if fault.CodeOf(err) != fault.NotFound {
		t.Errorf("pay A's order as B: got %v, want not_found", err)
	}
	if got, err := f.svc.Get(ctx, a, p.ID); err != nil || got.Refunded != 0 {
		t.Errorf("got %+v, %v, want A's payment untouched", got, err)
	}
	if evs := f.streamEvents(t, b, payments.StreamID(p.ID)); len(evs) != 0 {
		t.Errorf("got %d of A's events as B, want none", len(evs))
	}
}

func TestListPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	var want []uuid.UUID
	for range 5 {
		want = append(want, f.pay(t, tenantID, 100, payments.MethodCard).ID)
	}
	f.pay(t, other, 100, payments.MethodCard)
	slices.SortFunc(want, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })

	listed, sizes := apptest.Pages(t, 2, func(after uuid.UUID) ([]payments.Payment, error) {
		return f.svc.List(ctx, tenantID, payments.ListQuery{Limit: 2, After: after})
	}, func(p payments.Payment) uuid.UUID { return p.ID })
	var got []uuid.UUID
	for _, p := range listed {
		got = append(got, p.ID)
	}
	if !slices.Equal(sizes, []int{2, 2, 1}) || !slices.Equal(got, want) {
		t.Errorf("got sizes %v ids %v, want [2 2 1] %v", sizes, got, want)
	}
}

func TestNoTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	_, err := f.svc.Get(context.Background(), uuid.Nil, uuid.Must(uuid.NewV7()))
	if err == nil {
		t.Error("got no error without a tenant, want one")
	}
}
