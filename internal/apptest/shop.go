package apptest

import (
	"net/http"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/testenv"
)

// Shop is a tenant on the enterprise plan with one product, for tests that
// place and pay orders.
type Shop struct {
	Server  *Server
	Tenant  Tenant
	Product string // the product's id
}

// NewWithShop starts a server with the default options, as New does, and
// creates a shop on it as NewShop does.
func NewWithShop(t testing.TB, stock, price int) (*Server, Shop) {
	t.Helper()
	s := New(t, Options{})
	return s, NewShop(t, s, stock, price)
}

// NewShop creates a tenant on the enterprise plan on s with a product of
// the given stock and price (cents of EUR).
func NewShop(t testing.TB, s *Server, stock, price int) Shop {
	t.Helper()
	tn := s.NewTenant("shop", "enterprise")
	resp := s.Do(Request{Method: "POST", Path: "/v1/products", Key: tn.Key,
		Body: map[string]any{"sku": "W-1", "name": "Widget", "price": price, "currency": "EUR", "stock": stock}})
	if resp.Status != http.StatusCreated {
		t.Fatalf("create product: got %d %s", resp.Status, resp.Body)
	}
	return Shop{Server: s, Tenant: tn, Product: resp.Map(t)["id"].(string)}
}

// Order places an order of qty of the product and returns the answer.
func (sh Shop) Order(t testing.TB, qty int) Response {
	t.Helper()
	return sh.Server.Do(Request{Method: "POST", Path: "/v1/orders", Key: sh.Tenant.Key,
		Body: map[string]any{"customer_id": "cust-1", "items": []map[string]any{{"product_id": sh.Product, "quantity": qty}}}})
}

// Place places an order of qty of the product, failing the test unless
// it is created, and returns its id.
func (sh Shop) Place(t testing.TB, qty int) string {
	t.Helper()
	resp := sh.Order(t, qty)
	if resp.Status != http.StatusCreated {
		t.Fatalf("place an order of %d: got %d %s, want 201", qty, resp.Status, resp.Body)
	}
	return resp.Map(t)["id"].(string)
}

// Get sends GET path as the shop's admin and returns the answer's object,
// failing the test unless it is a 200.
func (sh Shop) Get(t testing.TB, path string) map[string]any {
	t.Helper()
	resp := sh.Server.Do(Request{Method: "GET", Path: path, Key: sh.Tenant.Key})
	if resp.Status != http.StatusOK {
		t.Fatalf("GET %s: got %d %s", path, resp.Status, resp.Body)
	}
	return resp.Map(t)
}

// Pay pays amount (EUR) for the order with method, with the extra header,
// and returns the answer.
func (sh Shop) Pay(t testing.TB, orderID string, amount int, method string, header map[string]string) Response {
	t.Helper()
	return sh.Server.Do(Request{Method: "POST", Path: "/v1/payments", Key: sh.Tenant.Key, Header: header,
		Body: map[string]any{"order_id": orderID, "amount": amount, "currency": "EUR", "payment_method": method}})
}

// WaitStatus polls the order until it has status, failing after a second,
// and returns it.
func (sh Shop) WaitStatus(t testing.TB, orderID, status string) map[string]any {
	t.Helper()
	var o map[string]any
	took := testenv.Eventually(t, time.Second, func() (bool, string) {
		o = sh.Get(t, "/v1/orders/"+orderID)
		return o["status"] == status, "order " + orderID + " reaches " + status
	})
	t.Logf("order reached %s in %v", status, took)
	return o
}
