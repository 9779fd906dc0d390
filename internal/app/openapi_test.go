package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/openapi"
	"github.com/tenantd/tenantd/internal/testenv"
)

// loadOpenAPI loads the served document and checks it is valid OpenAPI.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate the OpenAPI document: %v", err)
	}
	return doc
}

var ginParam = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

// openAPIPath turns a gin path template (/v1/products/:id) into an OpenAPI
// one (/v1/products/{id}).
func openAPIPath(ginPath string) string { return ginParam.ReplaceAllString(ginPath, "{$1}") }

// TestOpenAPIDescribesEveryRoute: the document has exactly the routes the
// server registers, no more and no fewer.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	doc := loadOpenAPI(t)

	registered := map[string]bool{}
	for _, r := range s.App.Engine.Routes() {
		registered[r.Method+" "+openAPIPath(r.Path)] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	var undocumented, unregistered []string
	for r := range registered {
		if !documented[r] {
			undocumented = append(undocumented, r)
		}
	}
	for d := range documented {
		if !registered[d] {
			unregistered = append(unregistered, d)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unregistered)
	if len(undocumented) > 0 {
		t.Errorf("registered but not in internal/openapi/openapi.json (%d):\n  %s", len(undocumented), strings.Join(undocumented, "\n  "))
	}
	if len(unregistered) > 0 {
		t.Errorf("in internal/openapi/openapi.json but not registered (%d):\n  %s", len(unregistered), strings.Join(unregistered, "\n  "))
	}
	if len(registered) < 30 {
		t.Errorf("only %d routes registered; the engine's route list is not what this test thinks", len(registered))
	}
}

// TestOpenAPIPermissions: each operation's x-permission is the permission
// its route is registered with, and the routes registered without one
// (probes, the document itself) declare none.
func TestOpenAPIPermissions(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	doc := loadOpenAPI(t)

	permission := map[string]string{}
	for _, r := range s.App.Routes.Routes() {
		permission[r.Method+" "+openAPIPath(r.Path)] = r.Permission
	}
	if len(permission) == 0 {
		t.Fatal("no routes in the permission table")
	}
	for _, r := range s.App.Engine.Routes() {
		path := openAPIPath(r.Path)
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(r.Method) == nil {
			continue // TestOpenAPIDescribesEveryRoute names it
		}
		got, _ := item.GetOperation(r.Method).Extensions["x-permission"].(string)
		if want := permission[r.Method+" "+path]; got != want {
			t.Errorf("%s %s: x-permission %q, registered with %q", r.Method, path, got, want)
		}
	}
}

// specCheck sends requests to the server and validates them and their
// responses against the document.
type specCheck struct {
	t      *testing.T
	s      *apptest.Server
	router routers.Router
	opts   *openapi3filter.Options
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func newSpecCheck(t *testing.T, s *apptest.Server) *specCheck {
	t.Helper()
	doc := loadOpenAPI(t)
	// The document's server is relative; route requests to the test server.
	doc.Servers = openapi3.Servers{{URL: s.URL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true, // a status the operation does not document fails
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.WithStringFormatValidator("uuid", openapi3.NewCallbackValidator(func(s string) error {
				if !uuidPattern.MatchString(s) {
					return fmt.Errorf("%q is not a lowercase UUID", s)
				}
				return nil
			})),
		},
	}
	return &specCheck{t: t, s: s, router: router, opts: opts}
}

// call is one request of the sample.
type call struct {
	method, path string
	key          string
	body         any
	header       map[string]string
	want         int
	invalid      bool // the request breaks the document on purpose
}

// do sends c, checks its status, and validates the request (unless it is
// invalid on purpose) and the response (status, declared headers, body)
// against the document.
func (sc *specCheck) do(t *testing.T, c call) apptest.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := sc.s.NewRequest(ctx, apptest.Request{Method: c.method, Path: c.path, Key: c.key, Body: c.body, Header: c.header})
	if err != nil {
		t.Fatal(err)
	}
	route, params, err := sc.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s: not in the document: %v", c.method, c.path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: sc.opts}
	if !c.invalid {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s %s: the request does not match the document: %.3000v", c.method, c.path, err)
		}
		if req.GetBody != nil { // the validator read it
			if req.Body, err = req.GetBody(); err != nil {
				t.Fatal(err)
			}
		}
	}
	resp, err := sc.s.SendHTTP(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	if resp.Status != c.want {
		t.Fatalf("%s %s: got %d %s, want %d", c.method, c.path, resp.Status, resp.Body, c.want)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.Status, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(resp.Body)), Options: sc.opts,
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s %s: the %d response does not match operation %s: %.3000v\nbody: %.2000s",
			c.method, c.path, resp.Status, route.Operation.OperationID, err, resp.Body)
	}
	return resp
}

// TestOpenAPIResponses: real responses of the server, successes and
// problems, match the document's schemas, statuses and headers.
func TestOpenAPIResponses(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	sc := newSpecCheck(t, s)
	op := apptest.OperatorKey
	id := func(r apptest.Response) string { return r.Map(t)["id"].(string) }

	// Operator routes and probes.
	for _, c := range []call{
		{method: "GET", path: "/healthz", want: 200},
		{method: "GET", path: "/readyz", want: 200},
		{method: "GET", path: "/metrics", want: 200},
		{method: "GET", path: "/admin/v1/plans", key: op, want: 200},
		{method: "GET", path: "/admin/v1/tenants?limit=1", key: op, want: 200},
		{method: "GET", path: "/admin/v1/tenants", want: 401},
	} {
		sc.do(t, c)
	}
	created := sc.do(t, call{method: "POST", path: "/admin/v1/tenants", key: op, want: 201,
		body: map[string]any{"slug": apptest.Slug("spec"), "name": "Spec Shop", "plan": "pro"}})
	tenantID := id(created)
	key := created.Map(t)["admin_api_key"].(string)
	sc.do(t, call{method: "GET", path: "/admin/v1/tenants/" + tenantID, key: op, want: 200})
	sc.do(t, call{method: "PATCH", path: "/admin/v1/tenants/" + tenantID, key: op, want: 200,
		body: map[string]any{"plan": "enterprise"}})
	sc.do(t, call{method: "GET", path: "/admin/v1/tenants/" + uuid.NewString(), key: op, want: 404})

	// The tenant, its keys, members and roles.
	tn := sc.do(t, call{method: "GET", path: "/v1/tenant", key: key, want: 200})
	sc.do(t, call{method: "PATCH", path: "/v1/tenant", key: key, want: 200, header: map[string]string{"If-Match": tn.Header.Get("ETag")},
		body: map[string]any{"name": "Spec Shop GmbH", "settings": map[string]any{"cors_origins": []string{"https://shop.example"}}}})
	sc.do(t, call{method: "PATCH", path: "/v1/tenant", key: key, want: 412, header: map[string]string{"If-Match": `"1"`},
		body: map[string]any{"name": "Too Late"}})
	sc.do(t, call{method: "GET", path: "/v1/api-keys", key: key, want: 200})
	clerk := sc.do(t, call{method: "POST", path: "/v1/api-keys", key: key, want: 201,
		body: map[string]any{"name": "till", "roles": []string{"clerk"}, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}})
	clerkKey := clerk.Map(t)["secret"].(string)
	spare := sc.do(t, call{method: "POST", path: "/v1/api-keys", key: key, want: 201,
		body: map[string]any{"name": "spare", "roles": []string{"viewer"}}})
	sc.do(t, call{method: "DELETE", path: "/v1/api-keys/" + id(spare), key: key, want: 204})
	member := sc.do(t, call{method: "POST", path: "/v1/members", key: key, want: 201,
		body: map[string]any{"email": "ada@shop.example", "roles": []string{"viewer"}}})
	sc.do(t, call{method: "GET", path: "/v1/members", key: key, want: 200})
	sc.do(t, call{method: "PATCH", path: "/v1/members/" + id(member), key: key, want: 200,
		body: map[string]any{"roles": []string{"viewer", "billing"}}})
	sc.do(t, call{method: "DELETE", path: "/v1/members/" + id(member), key: key, want: 204})
	sc.do(t, call{method: "GET", path: "/v1/roles", key: key, want: 200})
	role := sc.do(t, call{method: "POST", path: "/v1/roles", key: key, want: 201,
		body: map[string]any{"name": "auditor", "permissions": []string{"orders:read", "payments:read"}}})
	sc.do(t, call{method: "PATCH", path: "/v1/roles/auditor", key: key, want: 200, header: map[string]string{"If-Match": role.Header.Get("ETag")},
		body: map[string]any{"permissions": []string{"orders:read"}}})
	sc.do(t, call{method: "DELETE", path: "/v1/roles/auditor", key: key, want: 204})
	sc.do(t, call{method: "PATCH", path: "/v1/roles/admin", key: key, want: 409, body: map[string]any{"permissions": []string{"orders:read"}}})

	// Products, with an idempotent create replayed.
	product := map[string]any{"sku": "SPEC-1", "name": "Widget", "price": 2599, "currency": "EUR", "stock": 10}
	idem := map[string]string{"Idempotency-Key": "spec-product-1"}
	p := sc.do(t, call{method: "POST", path: "/v1/products", key: key, body: product, header: idem, want: 201})
	productID := id(p)
	replay := sc.do(t, call{method: "POST", path: "/v1/products", key: key, body: product, header: idem, want: 201})
	if replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replayed create: Idempotent-Replayed %q, want true", replay.Header.Get("Idempotent-Replayed"))
	}
	sc.do(t, call{method: "POST", path: "/v1/products", key: key, body: map[string]any{"sku": "SPEC-2", "name": "Other", "price": 1, "currency": "EUR"},
		header: idem, want: 422})
	sc.do(t, call{method: "POST", path: "/v1/products", key: key, body: product, want: 409})
	sc.do(t, call{method: "GET", path: "/v1/products/" + productID, key: key, want: 200})
	sc.do(t, call{method: "GET", path: "/v1/products/" + productID, key: key, want: 304, header: map[string]string{"If-None-Match": p.Header.Get("ETag")}})
	sc.do(t, call{method: "GET", path: "/v1/products?limit=1", key: key, want: 200})
	sc.do(t, call{method: "GET", path: "/v1/products?sku=SPEC-1", key: key, want: 200})
	sc.do(t, call{method: "PATCH", path: "/v1/products/" + productID, key: key, want: 200, header: map[string]string{"If-Match": p.Header.Get("ETag")},
		body: map[string]any{"price": 2599, "name": "Widget, blue"}})
	sc.do(t, call{method: "PATCH", path: "/v1/products/" + productID, key: key, want: 412, header: map[string]string{"If-Match": `"1"`},
		body: map[string]any{"name": "Stale"}})
	sc.do(t, call{method: "POST", path: "/v1/products/" + productID + "/stock", key: key, want: 200,
		body: map[string]any{"delta": 5, "reason": "delivery"}})
	doomed := sc.do(t, call{method: "POST", path: "/v1/products", key: key, want: 201,
		body: map[string]any{"sku": "SPEC-GONE", "name": "Gone", "price": 100, "currency": "EUR"}})
	sc.do(t, call{method: "DELETE", path: "/v1/products/" + id(doomed), key: key, want: 204})

	// Orders and payments.
	orderBody := map[string]any{"customer_id": "cust-1", "items": []map[string]any{{"product_id": productID, "quantity": 2}}}
	order := sc.do(t, call{method: "POST", path: "/v1/orders", key: key, body: orderBody, want: 201})
	orderID := id(order)
	sc.do(t, call{method: "GET", path: "/v1/products/" + productID + "/reservations", key: key, want: 200})
	sc.do(t, call{method: "GET", path: "/v1/orders/" + orderID, key: key, want: 200})
	sc.do(t, call{method: "GET", path: "/v1/orders?status=pending&limit=5", key: key, want: 200})
	sc.do(t, call{method: "POST", path: "/v1/payments", key: key, want: 422,
		body: map[string]any{"order_id": orderID, "amount": 1, "currency": "EUR", "payment_method": "card"}})
	pay := sc.do(t, call{method: "POST", path: "/v1/payments", key: clerkKey, want: 201,
		body: map[string]any{"order_id": orderID, "amount": 5198, "currency": "EUR", "payment_method": "card"}})
	paymentID := id(pay)
	sc.do(t, call{method: "POST", path: "/v1/payments", key: key, want: 409,
		body: map[string]any{"order_id": orderID, "amount": 5198, "currency": "EUR", "payment_method": "card"}})
	sc.do(t, call{method: "GET", path: "/v1/payments?order_id=" + orderID, key: key, want: 200})
	sc.do(t, call{method: "GET", path: "/v1/payments/" + paymentID, key: key, want: 200})
	sc.do(t, call{method: "POST", path: "/v1/payments/" + paymentID + "/refunds", key: key, want: 201, body: map[string]any{"amount": 100}})
	sc.do(t, call{method: "POST", path: "/v1/payments/" + paymentID + "/refunds", key: key, want: 409, body: map[string]any{"amount": 999999}})
	testenv.Eventually(t, time.Second, func() (bool, string) {
		r := sc.do(t, call{method: "GET", path: "/v1/orders/" + orderID, key: key, want: 200})
		return r.Map(t)["status"] == "completed", "the paid order completes"
	})
	sc.do(t, call{method: "GET", path: "/v1/orders/" + orderID + "/events", key: key, want: 200})
	other := sc.do(t, call{method: "POST", path: "/v1/orders", key: key, body: orderBody, want: 201})
	sc.do(t, call{method: "POST", path: "/v1/orders/" + id(other) + "/cancel", key: key, want: 200})
	sc.do(t, call{method: "POST", path: "/v1/orders/" + id(other) + "/cancel", key: key, want: 409})
	sc.do(t, call{method: "POST", path: "/v1/orders", key: key, want: 409,
		body: map[string]any{"customer_id": "cust-2", "items": []map[string]any{{"product_id": productID, "quantity": 1000}}}})
	sc.do(t, call{method: "GET", path: "/v1/events?limit=2", key: key, want: 200})
	sc.do(t, call{method: "GET", path: "/v1/events/stream?follow=false", key: key, want: 200})

	// Problems.
	for _, c := range []call{
		{method: "GET", path: "/v1/products/" + uuid.NewString(), key: key, want: 404},
		{method: "GET", path: "/v1/orders/not-a-uuid", key: key, want: 422, invalid: true},
		{method: "GET", path: "/v1/products?limit=0", key: key, want: 422, invalid: true},
		{method: "POST", path: "/v1/products", key: key, want: 422, invalid: true,
			body: map[string]any{"sku": "SPEC-3", "name": "X", "price": 1, "currency": "EUR", "colour": "red"}},
		{method: "POST", path: "/v1/products", key: key, want: 413, invalid: true, body: `{"name":"` + strings.Repeat("x", 1<<20) + `"}`},
		{method: "GET", path: "/v1/tenant", want: 401},
		{method: "GET", path: "/v1/tenant", key: "tk_not_a_key", want: 401},
		{method: "POST", path: "/v1/products", key: clerkKey, want: 403,
			body: map[string]any{"sku": "SPEC-4", "name": "X", "price": 1, "currency": "EUR"}},
		{method: "GET", path: "/v1/tenant", key: key, header: map[string]string{"X-Tenant": "someone-else"}, want: 403},
	} {
		sc.do(t, c)
	}

	// The reference itself.
	spec := sc.do(t, call{method: "GET", path: "/openapi.json", want: 200})
	if !bytes.Equal(spec.Body, openapi.Document()) {
		t.Errorf("GET /openapi.json is not the embedded document")
	}
	sc.do(t, call{method: "GET", path: "/openapi.json", want: 304, header: map[string]string{"If-None-Match": spec.Header.Get("ETag")}})
	sc.do(t, call{method: "GET", path: "/docs", want: 200})
	sc.do(t, call{method: "GET", path: "/docs/redoc.standalone.js", want: 200})
}
