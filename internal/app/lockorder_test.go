package app_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestLockOrder runs every multi-row write of stock at once on the same
// few products: placements of orders whose items name the products in
// random order, payments (the saga commits the stock), cancellations (it
// releases it) and expiry (the sweeper releases it), for several seconds.
// One lock order (docs/concurrency.md) means PostgreSQL records no
// deadlock, and the stock adds up: every product's reserved stock is the
// sum of its held reservations, with stock ≥ reserved ≥ 0. It does not run
// in parallel: the deadlock counter is the database's.
func TestLockOrder(t *testing.T) {
	const (
		clients  = 12
		products = 5
		runFor   = 8 * time.Second
	)
	admin := adminConn(t, testenv.Get(t))
	before := deadlocks(t, admin)
	s := apptest.New(t, apptest.Options{MaxConns: 16, Config: func(c *config.Config) {
		c.ReservationTTL = time.Second // the sweeper expires what is left unpaid
	}})
	tn := s.NewTenant("locks", "enterprise")
	ids := make([]string, products)
	for i := range ids {
		resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/products", Key: tn.Key,
			Body: map[string]any{"sku": fmt.Sprintf("L-%d", i), "name": "Lock", "price": 10, "currency": "EUR", "stock": 100_000}})
		if resp.Status != http.StatusCreated {
			t.Fatalf("create product: got %d %s", resp.Status, resp.Body)
		}
		ids[i] = resp.Map(t)["id"].(string)
	}

	var (
		mu       sync.Mutex
		statuses = map[string]int{}
		bad      []string
	)
	note := func(what string, resp apptest.Response, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", what, err))
		case resp.Status >= 500:
			bad = append(bad, fmt.Sprintf("%s: %d %s", what, resp.Status, resp.Body))
		}
		statuses[fmt.Sprintf("%s %d", what, resp.Status)]++
	}
	hammer(t, runFor, clients, func(r *rand.Rand) {
		items := []map[string]any{}
		for _, i := range r.Perm(products)[:2+r.IntN(products-1)] {
			items = append(items, map[string]any{"product_id": ids[i], "quantity": 1 + r.IntN(3)})
		}
		resp, err := s.Try(apptest.Request{Method: "POST", Path: "/v1/orders", Key: tn.Key,
			Body: map[string]any{"customer_id": "c", "items": items}})
		note("place", resp, err)
		if err != nil || resp.Status != http.StatusCreated {
			return
		}
		var o struct {
			ID    string `json:"id"`
			Total int    `json:"total"`
		}
		resp.JSON(t, &o)
		switch r.IntN(3) {
		case 0:
			resp, err = s.Try(apptest.Request{Method: "POST", Path: "/v1/payments", Key: tn.Key,
				Body: map[string]any{"order_id": o.ID, "amount": o.Total, "currency": "EUR", "payment_method": "card"}})
			note("pay", resp, err)
		case 1:
			resp, err = s.Try(apptest.Request{Method: "POST", Path: "/v1/orders/" + o.ID + "/cancel", Key: tn.Key})
			note("cancel", resp, err)
		default: // left to expire
		}
	})
	mu.Lock()
	t.Logf("answers: %v", statuses)
	for _, b := range bad[:min(len(bad), 10)] {
		t.Errorf("got %s, want no server error", b)
	}
	mu.Unlock()
	if statuses["place 201"] == 0 {
		t.Fatal("got no order placed, want a load that exercises the lock order")
	}

	// Wait until every unpaid order has expired: then nothing is held by a
	// pending order, and the books must balance.
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		var pending int
		if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM order_views WHERE tenant_id = $1 AND status = 'pending'`,
			tn.ID).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		return pending == 0, "no pending order left"
	})
	rows, err := admin.Query(t.Context(), `SELECT p.sku, p.stock_on_hand, p.stock_reserved,
			coalesce((SELECT sum(quantity) FROM reservations r WHERE r.tenant_id = p.tenant_id AND r.product_id = p.id AND r.status = 'held'), 0)
		FROM products p WHERE p.tenant_id = $1 ORDER BY p.sku`, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			sku                    string
			onHand, reserved, held int64
		)
		if err := rows.Scan(&sku, &onHand, &reserved, &held); err != nil {
			t.Fatal(err)
		}
		if reserved != held || reserved < 0 || onHand < reserved {
			t.Errorf("product %s: got stock %d, reserved %d, held reservations %d; want reserved = held and stock ≥ reserved ≥ 0",
				sku, onHand, reserved, held)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	flushAppStats(t, admin)
	if got := deadlocks(t, admin) - before; got != 0 {
		t.Errorf("got %d deadlocks in PostgreSQL, want none", got)
	}
}
