package app_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// shop is a tenant with a product, for order tests.
type shop struct {
	s       *apptest.Server
	tenant  apptest.Tenant
	product string
}

func newShop(t *testing.T, s *apptest.Server, stock, price int) shop {
	t.Helper()
	tn := s.NewTenant("shop", "enterprise")
	resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/products", Key: tn.Key,
		Body: map[string]any{"sku": "W-1", "name": "Widget", "price": price, "currency": "EUR", "stock": stock}})
	if resp.Status != 201 {
		t.Fatalf("create product: got %d %s", resp.Status, resp.Body)
	}
	return shop{s: s, tenant: tn, product: resp.Map(t)["id"].(string)}
}

func (sh shop) order(t *testing.T, qty int) apptest.Response {
	t.Helper()
	return sh.s.Do(apptest.Request{Method: "POST", Path: "/v1/orders", Key: sh.tenant.Key,
		Body: map[string]any{"customer_id": "cust-1", "items": []map[string]any{{"product_id": sh.product, "quantity": qty}}}})
}

func (sh shop) get(t *testing.T, path string) map[string]any {
	t.Helper()
	resp := sh.s.Do(apptest.Request{Method: "GET", Path: path, Key: sh.tenant.Key})
	if resp.Status != 200 {
		t.Fatalf("GET %s: got %d %s", path, resp.Status, resp.Body)
	}
	return resp.Map(t)
}

func (sh shop) pay(t *testing.T, orderID string, amount int, method string, header map[string]string) apptest.Response {
	t.Helper()
	return sh.s.Do(apptest.Request{Method: "POST", Path: "/v1/payments", Key: sh.tenant.Key, Header: header,
		Body: map[string]any{"order_id": orderID, "amount": amount, "currency": "EUR", "payment_method": method}})
}

// waitStatus polls the order until it has status, failing after a second.
func (sh shop) waitStatus(t *testing.T, orderID, status string) map[string]any {
	t.Helper()
	var o map[string]any
	took := testenv.Eventually(t, time.Second, func() (bool, string) {
		o = sh.get(t, "/v1/orders/"+orderID)
		return o["status"] == status, "order " + orderID + " reaches " + status
	})
	t.Logf("order reached %s in %v", status, took)
	return o
}

// TestOrderWorkflow: the whole saga through HTTP, as a client would use it.
func TestOrderWorkflow(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	sh := newShop(t, s, 10, 2599)

	t.Run("paid order completes and takes the stock", func(t *testing.T) {
		resp := sh.order(t, 2)
		if resp.Status != 201 {
			t.Fatalf("place: got %d %s, want 201", resp.Status, resp.Body)
		}
		o := resp.Map(t)
		if o["status"] != "pending" || o["total"] != float64(5198) || o["currency"] != "EUR" {
			t.Fatalf("placed order: got %s", resp.Body)
		}
		id := o["id"].(string)
		res := sh.get(t, "/v1/products/"+sh.product+"/reservations")["data"].([]any)
		if len(res) != 1 || res[0].(map[string]any)["order_id"] != id || res[0].(map[string]any)["status"] != "held" {
			t.Fatalf("reservations: got %v, want one held for %s", res, id)
		}
		if p := sh.get(t, "/v1/products/"+sh.product); p["reserved"] != float64(2) || p["available"] != float64(8) {
			t.Fatalf("product while pending: got %v", p)
		}
		pay := sh.pay(t, id, 5198, "card", nil)
		if pay.Status != 201 || pay.Map(t)["status"] != "succeeded" {
			t.Fatalf("pay: got %d %s, want 201 succeeded", pay.Status, pay.Body)
		}
		sh.waitStatus(t, id, "completed")
		if p := sh.get(t, "/v1/products/"+sh.product); p["stock"] != float64(8) || p["reserved"] != float64(0) {
			t.Fatalf("product after completion: got %v, want stock 8 reserved 0", p)
		}
		evs := sh.get(t, "/v1/orders/"+id+"/events")["data"].([]any)
		var types []string
		for _, e := range evs {
			types = append(types, e.(map[string]any)["type"].(string))
		}
		if fmt.Sprint(types) != "[order.placed stock.reserved order.completed]" {
			t.Fatalf("order events: got %v", types)
		}
		if again := sh.pay(t, id, 5198, "card", nil); again.Status != 409 || again.Code() != "order_not_payable" {
			t.Fatalf("paying a completed order: got %d %q, want 409 order_not_payable", again.Status, again.Code())
		}
	})

	t.Run("declined payment cancels and releases", func(t *testing.T) {
		id := sh.order(t, 3).Map(t)["id"].(string)
		if pay := sh.pay(t, id, 3*2599, "card_declined", nil); pay.Status != 201 || pay.Map(t)["status"] != "failed" {
			t.Fatalf("declined: got %d %s", pay.Status, pay.Body)
		}
		o := sh.waitStatus(t, id, "cancelled")
		if o["cancellation_reason"] != "payment_declined" {
			t.Fatalf("reason: got %v, want payment_declined", o["cancellation_reason"])
		}
		if p := sh.get(t, "/v1/products/"+sh.product); p["reserved"] != float64(0) || p["stock"] != float64(8) {
			t.Fatalf("product after release: got %v", p)
		}
	})

	t.Run("amount mismatch and unknown orders", func(t *testing.T) {
		id := sh.order(t, 1).Map(t)["id"].(string)
		if r := sh.pay(t, id, 1, "card", nil); r.Status != 422 || r.Code() != "amount_mismatch" {
			t.Fatalf("wrong amount: got %d %q", r.Status, r.Code())
		}
		if r := sh.pay(t, "0190a0a0-0000-7000-8000-000000000009", 1, "card", nil); r.Status != 404 {
			t.Fatalf("unknown order: got %d", r.Status)
		}
		if r := sh.s.Do(apptest.Request{Method: "POST", Path: "/v1/orders/" + id + "/cancel", Key: sh.tenant.Key}); r.Status != 200 || r.Map(t)["status"] != "cancelled" {
			t.Fatalf("cancel: got %d %s", r.Status, r.Body)
		}
		if r := sh.s.Do(apptest.Request{Method: "POST", Path: "/v1/orders/" + id + "/cancel", Key: sh.tenant.Key}); r.Status != 409 {
			t.Fatalf("cancel twice: got %d, want 409", r.Status)
		}
		if r := sh.pay(t, id, 2599, "card", nil); r.Status != 409 || r.Code() != "order_not_payable" {
			t.Fatalf("paying a cancelled order: got %d %q", r.Status, r.Code())
		}
	})

	t.Run("not enough stock writes nothing", func(t *testing.T) {
		before := sh.get(t, "/v1/products/"+sh.product)
		if r := sh.order(t, 1000); r.Status != 409 || r.Code() != "insufficient_stock" {
			t.Fatalf("got %d %q, want 409 insufficient_stock", r.Status, r.Code())
		}
		after := sh.get(t, "/v1/products/"+sh.product)
		if after["reserved"] != before["reserved"] || after["version"] != before["version"] {
			t.Fatalf("product changed: before %v after %v", before, after)
		}
	})

	t.Run("projection rebuild equals the live read model", func(t *testing.T) {
		live := sh.s.Do(apptest.Request{Method: "GET", Path: "/v1/orders?limit=200", Key: sh.tenant.Key}).Body
		n, err := sh.s.App.Orders.Rebuild(t.Context(), mustUUID(t, sh.tenant.ID))
		if err != nil || n == 0 {
			t.Fatalf("rebuild: %d orders, %v", n, err)
		}
		rebuilt := sh.s.Do(apptest.Request{Method: "GET", Path: "/v1/orders?limit=200", Key: sh.tenant.Key}).Body
		if string(live) != string(rebuilt) {
			t.Fatalf("rebuilt read model differs:\nlive    %s\nrebuilt %s", live, rebuilt)
		}
	})
}

// TestReservationExpiry: a pending order whose reservation expired is
// cancelled by the sweeper and its stock released.
func TestReservationExpiry(t *testing.T) {
	s := apptest.New(t, apptest.Options{Config: func(c *config.Config) { c.ReservationTTL = time.Second }})
	sh := newShop(t, s, 5, 100)
	id := sh.order(t, 2).Map(t)["id"].(string)
	var o map[string]any
	testenv.Eventually(t, 6*time.Second, func() (bool, string) {
		o = sh.get(t, "/v1/orders/"+id)
		return o["status"] == "cancelled", "the sweeper cancels the expired order"
	})
	if o["cancellation_reason"] != "reservation_expired" {
		t.Fatalf("reason: got %v", o["cancellation_reason"])
	}
	if p := sh.get(t, "/v1/products/"+sh.product); p["reserved"] != float64(0) || p["stock"] != float64(5) {
		t.Fatalf("product: got %v", p)
	}
	if r := sh.pay(t, id, 200, "card", nil); r.Status != 409 {
		t.Fatalf("paying an expired order: got %d, want 409", r.Status)
	}
}

// TestConcurrentOrders: stock is never over-reserved.
func TestConcurrentOrders(t *testing.T) {
	s := apptest.New(t, apptest.Options{MaxConns: 20})
	for _, tc := range []struct {
		name            string
		stock, ok, fail int
	}{{"stock 50, 100 orders", 50, 50, 50}, {"plenty of stock", 1000, 100, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			sh := newShop(t, s, tc.stock, 10)
			var mu sync.Mutex
			codes := map[int]int{}
			var wg sync.WaitGroup
			for i := 0; i < 100; i++ {
				wg.Go(func() {
					r := sh.order(t, 1)
					mu.Lock()
					codes[r.Status]++
					mu.Unlock()
					if r.Status != 201 && r.Code() != "insufficient_stock" {
						t.Errorf("got %d %s", r.Status, r.Body)
					}
				})
			}
			wg.Wait()
			if codes[201] != tc.ok || codes[409] != tc.fail {
				t.Fatalf("got %v, want %d × 201 and %d × 409", codes, tc.ok, tc.fail)
			}
			p := sh.get(t, "/v1/products/"+sh.product)
			if p["reserved"] != float64(tc.ok) || p["available"].(float64) < 0 {
				t.Fatalf("product: got %v, want reserved %d", p, tc.ok)
			}
		})
	}
}

// TestPaymentIdempotency: a client retrying a payment with one key is
// charged once.
func TestPaymentIdempotency(t *testing.T) {
	s := apptest.New(t, apptest.Options{MaxConns: 20, Config: func(c *config.Config) { c.GatewayLatency = 100 * time.Millisecond }})
	sh := newShop(t, s, 10, 500)
	id := sh.order(t, 1).Map(t)["id"].(string)
	key := map[string]string{"Idempotency-Key": "pay-" + id}
	var mu sync.Mutex
	var bodies []string
	conflicts := 0
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			r := sh.pay(t, id, 500, "card", key)
			mu.Lock()
			defer mu.Unlock()
			switch r.Status {
			case 201:
				bodies = append(bodies, string(r.Body))
			case 409:
				conflicts++
			default:
				t.Errorf("got %d %s", r.Status, r.Body)
			}
		})
	}
	wg.Wait()
	replay := sh.pay(t, id, 500, "card", key)
	if replay.Status != 201 || replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after the storm: got %d replayed=%q", replay.Status, replay.Header.Get("Idempotent-Replayed"))
	}
	bodies = append(bodies, string(replay.Body))
	for _, b := range bodies {
		if b != bodies[0] {
			t.Fatalf("responses differ:\n%s\n%s", bodies[0], b)
		}
	}
	list := sh.get(t, "/v1/payments?order_id="+id)["data"].([]any)
	if len(list) != 1 {
		t.Fatalf("payments for the order: got %d, want exactly 1", len(list))
	}
	if r := sh.pay(t, id, 400, "card", key); r.Status != 422 || r.Code() != "idempotency_key_reused" {
		t.Fatalf("same key, other body: got %d %q", r.Status, r.Code())
	}
	sh.waitStatus(t, id, "completed")
	t.Logf("%d × 201 (identical), %d × 409 in flight", len(bodies)-1, conflicts)
}

// TestCrossTenantOrders: B's orders, payments, reservations and events are
// invisible to A.
func TestCrossTenantOrders(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	a := newShop(t, s, 10, 100)
	b := newShop(t, s, 10, 100)
	bOrder := b.order(t, 1).Map(t)["id"].(string)
	bPay := b.pay(t, bOrder, 100, "card", nil).Map(t)["id"].(string)
	b.waitStatus(t, bOrder, "completed")
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/orders/" + bOrder},
		{"GET", "/v1/orders/" + bOrder + "/events"},
		{"POST", "/v1/orders/" + bOrder + "/cancel"},
		{"GET", "/v1/payments/" + bPay},
		{"GET", "/v1/products/" + b.product + "/reservations"},
	} {
		if r := s.Do(apptest.Request{Method: tc.method, Path: tc.path, Key: a.tenant.Key, Body: map[string]any{}}); r.Status != http.StatusNotFound {
			t.Errorf("%s %s as A: got %d %s, want 404", tc.method, tc.path, r.Status, r.Body)
		}
	}
	if r := s.Do(apptest.Request{Method: "POST", Path: "/v1/payments/" + bPay + "/refunds", Key: a.tenant.Key, Body: map[string]any{"amount": 1}}); r.Status != 404 {
		t.Errorf("refund B's payment as A: got %d", r.Status)
	}
	if r := a.pay(t, bOrder, 100, "card", nil); r.Status != 404 {
		t.Errorf("pay B's order as A: got %d", r.Status)
	}
	for _, path := range []string{"/v1/orders", "/v1/payments"} {
		body := string(s.Do(apptest.Request{Method: "GET", Path: path, Key: a.tenant.Key}).Body)
		if contains(body, bOrder) || contains(body, bPay) {
			t.Errorf("%s as A shows B's rows: %s", path, body)
		}
	}
}

func mustUUID(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
