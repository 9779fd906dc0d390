//go:build citus

package citus_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// shop is a tenant with one product, created through the HTTP API.
type shop struct {
	tenant  apptest.Tenant
	product string
	price   int
}

// newShop creates an enterprise tenant and a product with stock.
func newShop(t testing.TB, s *apptest.Server, name string, stock, price int) shop {
	t.Helper()
	tn := s.CreateTenant(name+"-"+testenv.RandomHex(4), "enterprise")
	var p struct {
		ID string `json:"id"`
	}
	s.Expect(t, apptest.Request{Method: "POST", Path: "/v1/products", Key: tn.Key,
		Body: map[string]any{"sku": "W-1", "name": "Widget", "price": price, "currency": "EUR", "stock": stock}}, 201, &p)
	return shop{tenant: tn, product: p.ID, price: price}
}

// orderRequest places an order of qty of the shop's product.
func (sh shop) orderRequest(qty int) apptest.Request {
	return apptest.Request{Method: "POST", Path: "/v1/orders", Key: sh.tenant.Key,
		Body: map[string]any{"customer_id": "cust-1", "items": []map[string]any{{"product_id": sh.product, "quantity": qty}}}}
}

// completedOrder places an order, pays it and waits until the saga has
// completed it: events, reservations, payments, the order view and audit
// rows are then written for the tenant.
func (sh shop) completedOrder(t testing.TB, s *apptest.Server, qty int) string {
	t.Helper()
	var o struct {
		ID string `json:"id"`
	}
	s.Expect(t, sh.orderRequest(qty), 201, &o)
	s.Expect(t, apptest.Request{Method: "POST", Path: "/v1/payments", Key: sh.tenant.Key,
		Body: map[string]any{"order_id": o.ID, "amount": qty * sh.price, "currency": "EUR", "payment_method": "card"}}, 201, nil)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		var got struct {
			Status string `json:"status"`
		}
		s.Expect(t, apptest.Request{Method: "GET", Path: "/v1/orders/" + o.ID, Key: sh.tenant.Key}, 200, &got)
		return got.Status == "completed", fmt.Sprintf("order %s completed (is %s)", o.ID, got.Status)
	})
	return o.ID
}

// seedTwoTenants writes two tenants' data through the HTTP API (products,
// a completed order, a pending one) and stops the server before it
// returns, so that no background work writes while a test counts rows.
func seedTwoTenants(t *testing.T) (a, b shop) {
	t.Helper()
	ok := t.Run("seed", func(t *testing.T) {
		s := apptest.New(t, apptest.Options{})
		a = newShop(t, s, "iso-a", 100, 1000)
		b = newShop(t, s, "iso-b", 100, 700)
		for _, sh := range []shop{a, b} {
			sh.completedOrder(t, s, 2)
			s.Expect(t, sh.orderRequest(1), 201, nil)
		}
	})
	if !ok {
		t.FailNow()
	}
	return a, b
}
