package client_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/client"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newClient returns a generated client for the server that sends key as
// the bearer credential on every request.
func newClient(t *testing.T, s *apptest.Server, key string) *client.ClientWithResponses {
	t.Helper()
	c, err := client.NewClientWithResponses(s.URL, client.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+key)
		return nil
	}))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// TestClientEndToEnd drives a real server through the client generated from
// /openapi.json: create a product, place an order, read it back and page
// through the list, and decode a problem. It fails when the document and
// the server disagree in a way a generated client notices.
func TestClientEndToEnd(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	tn := s.CreateTenant(fmt.Sprintf("client-%d", time.Now().UnixNano()), "pro")
	c := newClient(t, s, tn.Key)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	created, err := c.CreateProductWithResponse(ctx, &client.CreateProductParams{IdempotencyKey: ptr("client-product-1")},
		client.ProductCreate{Sku: "CLI-1", Name: "Widget", Price: 2599, Currency: "EUR", Stock: ptr[int64](10)})
	if err != nil {
		t.Fatalf("create product: %v", err)
	}
	if created.StatusCode() != http.StatusCreated || created.JSON201 == nil {
		t.Fatalf("create product: got %d %s, want 201 with a Product", created.StatusCode(), created.Body)
	}
	product := *created.JSON201
	if product.Sku != "CLI-1" || product.Stock != 10 || product.Available != 10 || product.Price != 2599 {
		t.Errorf("created product: got %+v, want CLI-1 with 10 in stock at 2599", product)
	}

	placed, err := c.PlaceOrderWithResponse(ctx, &client.PlaceOrderParams{}, client.OrderCreate{
		CustomerId: "cust-1",
		Items:      []client.OrderItemCreate{{ProductId: product.Id, Quantity: 3}},
	})
	if err != nil {
		t.Fatalf("place order: %v", err)
	}
	if placed.StatusCode() != http.StatusCreated || placed.JSON201 == nil {
		t.Fatalf("place order: got %d %s, want 201 with an Order", placed.StatusCode(), placed.Body)
	}
	order := *placed.JSON201

	got, err := c.GetOrderWithResponse(ctx, order.Id, &client.GetOrderParams{})
	if err != nil {
		t.Fatalf("get order: %v", err)
	}
	if got.StatusCode() != http.StatusOK || got.JSON200 == nil {
		t.Fatalf("get order: got %d %s, want 200 with an Order", got.StatusCode(), got.Body)
	}
	o := *got.JSON200
	if o.Id != order.Id || o.Status != client.OrderStatusPending || o.CustomerId != "cust-1" || o.Total != 3*2599 || o.Currency != "EUR" {
		t.Errorf("read back: got id %s status %s customer %q total %d %s, want %s pending cust-1 7797 EUR",
			o.Id, o.Status, o.CustomerId, o.Total, o.Currency, order.Id)
	}
	if len(o.Items) != 1 || o.Items[0].ProductId != product.Id || o.Items[0].Sku != "CLI-1" || o.Items[0].Quantity != 3 || o.Items[0].Amount != 3*2599 {
		t.Errorf("read back items: got %+v, want 3 of CLI-1 for 7797", o.Items)
	}

	// A second order, then the list one page at a time through next_cursor.
	if again, err := c.PlaceOrderWithResponse(ctx, nil, client.OrderCreate{
		CustomerId: "cust-2", Items: []client.OrderItemCreate{{ProductId: product.Id, Quantity: 1}},
	}); err != nil || again.StatusCode() != http.StatusCreated {
		t.Fatalf("place second order: %v %s", err, again.Body)
	}
	var listed int
	var cursor *client.Cursor
	for page := 0; ; page++ {
		if page > 3 {
			t.Fatalf("list orders: still paging after %d pages", page)
		}
		list, err := c.ListOrdersWithResponse(ctx, &client.ListOrdersParams{Limit: ptr(1), Cursor: cursor})
		if err != nil {
			t.Fatalf("list orders: %v", err)
		}
		if list.StatusCode() != http.StatusOK || list.JSON200 == nil {
			t.Fatalf("list orders: got %d %s, want 200 with an OrderList", list.StatusCode(), list.Body)
		}
		listed += len(list.JSON200.Data)
		if list.JSON200.NextCursor == nil {
			break
		}
		cursor = list.JSON200.NextCursor
	}
	if listed != 2 {
		t.Errorf("list orders: got %d orders over the pages, want 2", listed)
	}

	missing, err := c.GetOrderWithResponse(ctx, uuid.New(), nil)
	if err != nil {
		t.Fatalf("get a missing order: %v", err)
	}
	if missing.StatusCode() != http.StatusNotFound || missing.ApplicationproblemJSON404 == nil ||
		missing.ApplicationproblemJSON404.Code != client.ProblemCodeNotFound {
		t.Errorf("get a missing order: got %d %s, want 404 problem not_found", missing.StatusCode(), missing.Body)
	}
}
