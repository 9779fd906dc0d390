package app_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/orders"
	"github.com/tenantd/tenantd/payments"
)

// sagaHandler captures the handler the order saga registers.
type sagaHandler struct{ h events.Handler }

func (c *sagaHandler) Subscribe(_ string, _ []string, h events.Handler) { c.h = h }

// TestPaymentForCancelledOrderIsRefunded: the customer cancels while the
// card is being charged; the charge succeeds. The order stays cancelled,
// its stock released, and the saga has the payment refunded at the gateway
// (sent by the reconciler), audited, exactly once, even when the saga sees
// payment.succeeded a second time.
func TestPaymentForCancelledOrderIsRefunded(t *testing.T) {
	s := apptest.New(t, apptest.Options{Config: func(c *config.Config) { c.GatewayLatency = 500 * time.Millisecond }})
	sh := apptest.NewShop(t, s, 5, 1000)
	orderID := sh.Place(t, 1)
	tenantID := mustUUID(t, sh.Tenant.ID)

	paid := make(chan apptest.Response, 1)
	go func() {
		r, err := s.Try(apptest.Request{Method: "POST", Path: "/v1/payments", Key: sh.Tenant.Key,
			Body: map[string]any{"order_id": orderID, "amount": 1000, "currency": "EUR", "payment_method": "card"}})
		if err != nil {
			t.Errorf("pay: %v", err)
		}
		paid <- r
	}()
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		list := sh.Get(t, "/v1/payments?order_id="+orderID)["data"].([]any)
		return len(list) == 1 && list[0].(map[string]any)["status"] == "processing", "the payment is at the gateway"
	})
	if r := s.Do(apptest.Request{Method: "POST", Path: "/v1/orders/" + orderID + "/cancel", Key: sh.Tenant.Key}); r.Status != 200 {
		t.Fatalf("cancel while paying: got %d %s", r.Status, r.Body)
	}
	pay := <-paid
	if pay.Status != 201 || pay.Map(t)["status"] != "succeeded" {
		t.Fatalf("pay: got %d %s, want 201 succeeded", pay.Status, pay.Body)
	}
	paymentID := mustUUID(t, pay.Map(t)["id"].(string))

	appDB := s.Env.OpenDB(t, 2)
	owner := s.Env.OpenOwnerDB(t)
	ctx := context.Background()
	type refundRow struct{ Status, Reason string }
	refunds := func() []refundRow {
		t.Helper()
		var rows []refundRow
		err := owner.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
			return tx.Raw(`SELECT status, reason FROM refunds WHERE payment_id = ?`, paymentID).Scan(&rows).Error
		})
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		r := refunds()
		return len(r) == 1 && r[0].Status == "succeeded", "the refund succeeds at the gateway"
	})

	// Delivered again: the saga's handler runs once more on the same event.
	var saga sagaHandler
	s.App.Orders.Subscribe(&saga)
	err := appDB.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		stream, err := events.Load(ctx, tx, tenantID, payments.StreamID(paymentID))
		if err != nil {
			return err
		}
		i := slices.IndexFunc(stream, func(e events.Event) bool { return e.Type == payments.EventSucceeded })
		if i < 0 {
			t.Fatalf("got stream %v, want a payment.succeeded", stream)
		}
		return saga.h(events.WithCause(ctx, stream[i]), tx, stream[i])
	})
	if err != nil {
		t.Fatalf("saga again: %v", err)
	}
	time.Sleep(2 * payments.DefaultReconcileEvery) // give a second refund the time to be sent, were there one

	if r := refunds(); len(r) != 1 || r[0] != (refundRow{"succeeded", "order_cancelled"}) {
		t.Errorf("got refunds %+v, want one succeeded order_cancelled refund", r)
	}
	var atGateway int64
	if err := owner.Unscoped(ctx).Raw(`SELECT count(*) FROM sim_gateway_refunds WHERE charge_key = ? AND status = 'succeeded'`,
		paymentID).Scan(&atGateway).Error; err != nil {
		t.Fatal(err)
	}
	if atGateway != 1 {
		t.Errorf("got %d refunds at the gateway, want 1", atGateway)
	}
	var actions []string
	err = owner.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		// The owner reads every tenant's audit rows (for the sealer): name the tenant.
		return tx.Raw(`SELECT action FROM audit_events WHERE tenant_id = ? AND action LIKE 'refund.%' ORDER BY position`,
			tenantID).Scan(&actions).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{payments.ActionRefundRequested, payments.ActionRefundSucceeded}; !slices.Equal(actions, want) {
		t.Errorf("got audit actions %v, want %v", actions, want)
	}

	o := sh.Get(t, "/v1/orders/"+orderID)
	if o["status"] != string(orders.Cancelled) || o["cancellation_reason"] != orders.ReasonCustomerRequest {
		t.Errorf("got order %v, want cancelled by the customer", o)
	}
	if p := sh.Get(t, "/v1/products/"+sh.Product); p["stock"] != float64(5) || p["reserved"] != float64(0) {
		t.Errorf("got product %v, want stock 5, nothing reserved", p)
	}
	if p := sh.Get(t, "/v1/payments/"+paymentID.String()); p["status"] != "succeeded" || p["refunded"] != float64(1000) {
		t.Errorf("got payment %v, want succeeded and refunded 1000", p)
	}
	var types []string
	err = appDB.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		stream, err := events.Load(ctx, tx, tenantID, payments.StreamID(paymentID))
		for _, e := range stream {
			types = append(types, e.Type)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{payments.EventSucceeded, payments.EventRefunded}; !slices.Equal(types, want) {
		t.Errorf("got payment events %v, want %v", types, want)
	}
	if evs := sh.Get(t, "/v1/orders/"+orderID+"/events")["data"].([]any); len(evs) != 3 {
		t.Errorf("got %d order events, want placed, reserved, cancelled", len(evs))
	}
}

// TestSagaRefundContract pins the event names the order saga reads to the
// ones payments publishes.
func TestSagaRefundContract(t *testing.T) {
	if orders.EventPaymentSucceeded != payments.EventSucceeded || orders.EventPaymentFailed != payments.EventFailed {
		t.Errorf("got saga events %q, %q, want %q, %q", orders.EventPaymentSucceeded, orders.EventPaymentFailed,
			payments.EventSucceeded, payments.EventFailed)
	}
	var _ orders.Refunds = (*payments.Service)(nil) // the adapter in adapters.go only defers the lookup
}
