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

// TestOrderWorkflow: the whole saga through HTTP, as a client would use it.
func TestOrderWorkflow(t *testing.T) {
	_, sh := apptest.NewWithShop(t, 10, 2599)

	t.Run("paid order completes and takes the stock", func(t *testing.T) {
		resp := sh.Order(t, 2)
		if resp.Status != 201 {
			t.Fatalf("place: got %d %s, want 201", resp.Status, resp.Body)
		}
		o := resp.Map(t)
		if o["status"] != "pending" || o["total"] != float64(5198) || o["currency"] != "EUR" {
			t.Fatalf("placed order: got %s", resp.Body)
		}
		id := o["id"].(string)
		res := sh.Get(t, "/v1/products/"+sh.Product+"/reservations")["data"].([]any)
		if len(res) != 1 || res[0].(map[string]any)["order_id"] != id || res[0].(map[string]any)["status"] != "held" {
			t.Fatalf("reservations: got %v, want one held for %s", res, id)
		}
		if p := sh.Get(t, "/v1/products/"+sh.Product); p["reserved"] != float64(2) || p["available"] != float64(8) {
			t.Fatalf("product while pending: got %v", p)
		}
		pay := sh.Pay(t, id, 5198, "card", nil)
		if pay.Status != 201 || pay.Map(t)["status"] != "succeeded" {
			t.Fatalf("pay: got %d %s, want 201 succeeded", pay.Status, pay.Body)
		}
		sh.WaitStatus(t, id, "completed")
		if p := sh.Get(t, "/v1/products/"+sh.Product); p["stock"] != float64(8) || p["reserved"] != float64(0) {
			t.Fatalf("product after completion: got %v, want stock 8 reserved 0", p)
		}
		evs := sh.Get(t, "/v1/orders/"+id+"/events")["data"].([]any)
		var types []string
		for _, e := range evs {
			types = append(types, e.(map[string]any)["type"].(string))
		}
		if fmt.Sprint(types) != "[order.placed stock.reserved order.completed]" {
			t.Fatalf("order events: got %v", types)
		}
		if again := sh.Pay(t, id, 5198, "card", nil); again.Status != 409 || again.Code() != "order_not_payable" {
			t.Fatalf("paying a completed order: got %d %q, want 409 order_not_payable", again.Status, again.Code())
		}
	})

	t.Run("declined payment cancels and releases", func(t *testing.T) {
		id := sh.Place(t, 3)
		if pay := sh.Pay(t, id, 3*2599, "card_declined", nil); pay.Status != 201 || pay.Map(t)["status"] != "failed" {
			t.Fatalf("declined: got %d %s", pay.Status, pay.Body)
		}
		o := sh.WaitStatus(t, id, "cancelled")
		if o["cancellation_reason"] != "payment_declined" {
			t.Fatalf("reason: got %v, want payment_declined", o["cancellation_reason"])
		}
		if p := sh.Get(t, "/v1/products/"+sh.Product); p["reserved"] != float64(0) || p["stock"] != float64(8) {
			t.Fatalf("product after release: got %v", p)
		}
	})

	t.Run("amount mismatch and unknown orders", func(t *testing.T) {
		id := sh.Place(t, 1)
		if r := sh.Pay(t, id, 1, "card", nil); r.Status != 422 || r.Code() != "amount_mismatch" {
			t.Fatalf("wrong amount: got %d %q", r.Status, r.Code())
		}
		if r := sh.Pay(t, "0190a0a0-0000-7000-8000-000000000009", 1, "card", nil); r.Status != 404 {
			t.Fatalf("unknown order: got %d", r.Status)
		}
		if r := sh.Server.Do(apptest.Request{Method: "POST", Path: "/v1/orders/" + id + "/cancel", Key: sh.Tenant.Key}); r.Status != 200 || r.Map(t)["status"] != "cancelled" {
			t.Fatalf("cancel: got %d %s", r.Status, r.Body)
		}
		if r := sh.Server.Do(apptest.Request{Method: "POST", Path: "/v1/orders/" + id + "/cancel", Key: sh.Tenant.Key}); r.Status != 409 {
			t.Fatalf("cancel twice: got %d, want 409", r.Status)
		}
		if r := sh.Pay(t, id, 2599, "card", nil); r.Status != 409 || r.Code() != "order_not_payable" {
			t.Fatalf("paying a cancelled order: got %d %q", r.Status, r.Code())
		}
	})

	t.Run("not enough stock writes nothing", func(t *testing.T) {
		before := sh.Get(t, "/v1/products/"+sh.Product)
		if r := sh.Order(t, 1000); r.Status != 409 || r.Code() != "insufficient_stock" {
			t.Fatalf("got %d %q, want 409 insufficient_stock", r.Status, r.Code())
		}
		after := sh.Get(t, "/v1/products/"+sh.Product)
		if after["reserved"] != before["reserved"] || after["version"] != before["version"] {
			t.Fatalf("product changed: before %v after %v", before, after)
		}
	})

	t.Run("projection rebuild equals the live read model", func(t *testing.T) {
		live := sh.Server.Do(apptest.Request{Method: "GET", Path: "/v1/orders?limit=200", Key: sh.Tenant.Key}).Body
		n, err := sh.Server.App.Orders.Rebuild(t.Context(), mustUUID(t, sh.Tenant.ID))
		if err != nil || n == 0 {
			t.Fatalf("rebuild: %d orders, %v", n, err)
		}
		rebuilt := sh.Server.Do(apptest.Request{Method: "GET", Path: "/v1/orders?limit=200", Key: sh.Tenant.Key}).Body
		if string(live) != string(rebuilt) {
			t.Fatalf("rebuilt read model differs:\nlive    %s\nrebuilt %s", live, rebuilt)
		}
	})
}

// TestReservationExpiry: a pending order whose reservation expired is
// cancelled by the sweeper and its stock released.
func TestReservationExpiry(t *testing.T) {
	s := apptest.New(t, apptest.Options{Config: func(c *config.Config) { c.ReservationTTL = time.Second }})
	sh := apptest.NewShop(t, s, 5, 100)
	id := sh.Place(t, 2)
	var o map[string]any
	testenv.Eventually(t, 6*time.Second, func() (bool, string) {
		o = sh.Get(t, "/v1/orders/"+id)
		return o["status"] == "cancelled", "the sweeper cancels the expired order"
	})
	if o["cancellation_reason"] != "reservation_expired" {
		t.Fatalf("reason: got %v", o["cancellation_reason"])
	}
	if p := sh.Get(t, "/v1/products/"+sh.Product); p["reserved"] != float64(0) || p["stock"] != float64(5) {
		t.Fatalf("product: got %v", p)
	}
	if r := sh.Pay(t, id, 200, "card", nil); r.Status != 409 {
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
			sh := apptest.NewShop(t, s, tc.stock, 10)
			var mu sync.Mutex
			codes := map[int]int{}
			var wg sync.WaitGroup
			for i := 0; i < 100; i++ {
				wg.Go(func() {
					r := sh.Order(t, 1)
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
			p := sh.Get(t, "/v1/products/"+sh.Product)
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
	sh := apptest.NewShop(t, s, 10, 500)
	id := sh.Place(t, 1)
	key := map[string]string{"Idempotency-Key": "pay-" + id}
	var mu sync.Mutex
	var bodies []string
	conflicts := 0
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			r := sh.Pay(t, id, 500, "card", key)
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
	replay := sh.Pay(t, id, 500, "card", key)
	if replay.Status != 201 || replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after the storm: got %d replayed=%q", replay.Status, replay.Header.Get("Idempotent-Replayed"))
	}
	bodies = append(bodies, string(replay.Body))
	for _, b := range bodies {
		if b != bodies[0] {
			t.Fatalf("responses differ:\n%s\n%s", bodies[0], b)
		}
	}
	list := sh.Get(t, "/v1/payments?order_id="+id)["data"].([]any)
	if len(list) != 1 {
		t.Fatalf("payments for the order: got %d, want exactly 1", len(list))
	}
	if r := sh.Pay(t, id, 400, "card", key); r.Status != 422 || r.Code() != "idempotency_key_reused" {
		t.Fatalf("same key, other body: got %d %q", r.Status, r.Code())
	}
	sh.WaitStatus(t, id, "completed")
	t.Logf("%d × 201 (identical), %d × 409 in flight", len(bodies)-1, conflicts)
}

// TestCrossTenantOrders: B's orders, payments, reservations and events are
// invisible to A.
func TestCrossTenantOrders(t *testing.T) {
	s, a := apptest.NewWithShop(t, 10, 100)
	b := apptest.NewShop(t, s, 10, 100)
	bOrder := b.Place(t, 1)
	bPay := b.Pay(t, bOrder, 100, "card", nil).Map(t)["id"].(string)
	b.WaitStatus(t, bOrder, "completed")
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/orders/" + bOrder},
		{"GET", "/v1/orders/" + bOrder + "/events"},
		{"POST", "/v1/orders/" + bOrder + "/cancel"},
		{"GET", "/v1/payments/" + bPay},
		{"GET", "/v1/products/" + b.Product + "/reservations"},
	} {
		if r := s.Do(apptest.Request{Method: tc.method, Path: tc.path, Key: a.Tenant.Key, Body: map[string]any{}}); r.Status != http.StatusNotFound {
			t.Errorf("%s %s as A: got %d %s, want 404", tc.method, tc.path, r.Status, r.Body)
		}
	}
	if r := s.Do(apptest.Request{Method: "POST", Path: "/v1/payments/" + bPay + "/refunds", Key: a.Tenant.Key, Body: map[string]any{"amount": 1}}); r.Status != 404 {
		t.Errorf("refund B's payment as A: got %d", r.Status)
	}
	if r := a.Pay(t, bOrder, 100, "card", nil); r.Status != 404 {
		t.Errorf("pay B's order as A: got %d", r.Status)
	}
	for _, path := range []string{"/v1/orders", "/v1/payments"} {
		body := string(s.Do(apptest.Request{Method: "GET", Path: path, Key: a.Tenant.Key}).Body)
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
