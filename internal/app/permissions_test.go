package app_test

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/internal/apptest"
)

// matrixRequests holds, for every route as registered, what its request
// needs beyond the route itself (see matrixRequest). A route registered
// without an entry here fails TestPermissionMatrix, so no route escapes the
// check.
var matrixRequests = map[string]matrixEntry{
	"GET /v1/tenant":                             {},
	"PATCH /v1/tenant":                           {body: map[string]any{"name": "Matrix"}},
	"GET /v1/api-keys":                           {},
	"POST /v1/api-keys":                          {body: map[string]any{"name": "m", "roles": []string{"viewer"}}},
	"DELETE /v1/api-keys/:id":                    {},
	"GET /v1/members":                            {},
	"POST /v1/members":                           {body: map[string]any{"email": "m@example.com", "roles": []string{"viewer"}}},
	"PATCH /v1/members/:id":                      {body: map[string]any{"roles": []string{"viewer"}}},
	"DELETE /v1/members/:id":                     {},
	"GET /v1/roles":                              {},
	"POST /v1/roles":                             {body: map[string]any{"name": "matrix", "permissions": []string{"products:read"}}},
	"PATCH /v1/roles/:name":                      {body: map[string]any{"permissions": []string{"products:read"}}},
	"DELETE /v1/roles/:name":                     {},
	"GET /v1/products":                           {},
	"POST /v1/products":                          {body: map[string]any{"sku": "M-1", "name": "M", "price": 1, "currency": "EUR", "stock": 1}},
	"GET /v1/products/:id":                       {},
	"PATCH /v1/products/:id":                     {body: map[string]any{"name": "M"}},
	"DELETE /v1/products/:id":                    {},
	"POST /v1/products/:id/stock":                {body: map[string]any{"delta": 1, "reason": "m"}},
	"GET /v1/products/:id/reservations":          {},
	"POST /v1/orders":                            {body: map[string]any{"customer_id": "c", "items": []map[string]any{{"product_id": "0190a0a0-0000-7000-8000-000000000001", "quantity": 1}}}},
	"GET /v1/orders":                             {},
	"GET /v1/orders/:id":                         {},
	"POST /v1/orders/:id/cancel":                 {},
	"GET /v1/orders/:id/events":                  {},
	"POST /v1/payments":                          {body: map[string]any{"order_id": "0190a0a0-0000-7000-8000-000000000001", "amount": 1, "currency": "EUR", "payment_method": "card"}},
	"GET /v1/payments":                           {},
	"GET /v1/payments/:id":                       {},
	"POST /v1/payments/:id/refunds":              {body: map[string]any{"amount": 1}},
	"GET /v1/events":                             {},
	"GET /v1/events/stream":                      {query: "?follow=false"},
	"GET /v1/audit-events":                       {},
	"GET /v1/usage":                              {},
	"GET /admin/v1/usage":                        {},
	"POST /admin/v1/billing/exports":             {body: map[string]any{"period": "2001-01", "format": "csv"}},
	"GET /admin/v1/billing/exports/:id/download": {},
	"GET /admin/v1/plans":                        {},
	"GET /admin/v1/audit-events":                 {},
	"GET /admin/v1/dead-letters":                 {},
	"GET /admin/v1/dead-letters/:id":             {},
	"POST /admin/v1/dead-letters/:id/replay":     {},
	"DELETE /admin/v1/dead-letters/:id":          {},
	"GET /admin/v1/tenants":                      {},
	"POST /admin/v1/tenants":                     {body: map[string]any{"slug": "matrix-x", "name": "M"}},
	"GET /admin/v1/tenants/:id":                  {},
	"PATCH /admin/v1/tenants/:id":                {body: map[string]any{"name": "M"}},
	// Webhooks.
	"GET /v1/webhooks":                                    {},
	"POST /v1/webhooks":                                   {body: map[string]any{"url": "https://hooks.example.invalid/matrix", "event_types": []string{"*"}}},
	"GET /v1/webhooks/:id":                                {},
	"PATCH /v1/webhooks/:id":                              {body: map[string]any{"description": "m"}},
	"DELETE /v1/webhooks/:id":                             {},
	"POST /v1/webhooks/:id/rotate-secret":                 {},
	"POST /v1/webhooks/:id/test":                          {},
	"POST /v1/webhooks/:id/recover":                       {body: map[string]any{"since": "2026-01-01T00:00:00Z"}},
	"GET /v1/webhooks/:id/deliveries":                     {},
	"POST /v1/webhooks/:id/deliveries/:delivery_id/retry": {},
	// Tenant export and erasure (GDPR).
	"POST /v1/tenant/exports":             {},
	"GET /v1/tenant/exports/:id":          {},
	"GET /v1/tenant/exports/:id/download": {},
	"DELETE /admin/v1/tenants/:id":        {query: "?confirm=matrix"},
}

// matrixEntry is a request's body, if any, and its query string, if any.
type matrixEntry struct {
	body  any
	query string
}

// matrixParams fills in a route's parameters: ids that name nothing, and a
// role that does not exist.
var matrixParams = strings.NewReplacer(":delivery_id", "0190a0a0-0000-7000-8000-000000000002",
	":id", "0190a0a0-0000-7000-8000-000000000001", ":name", "nope")

// matrixRequest is the request for route ("METHOD /path/:param"): its
// method, its path with matrixParams and the entry's query, and the
// entry's body.
func matrixRequest(route string, e matrixEntry) apptest.Request {
	method, path, _ := strings.Cut(route, " ")
	return apptest.Request{Method: method, Path: matrixParams.Replace(path) + e.query, Body: e.body}
}

// TestPermissionMatrix checks, through the real HTTP stack, every route
// against every built-in role: allowed exactly when the role has the route's
// permission. Operator routes refuse every tenant role.
func TestPermissionMatrix(t *testing.T) {
	s, tn := apptest.NewWithTenant(t, "matrix", "pro")
	keys := map[string]string{"admin": tn.Key}
	for role := range auth.BuiltinRoles {
		if role != "admin" {
			keys[role] = s.CreateKey(tn.Key, role)
		}
	}

	var registered []string
	for _, r := range s.App.Routes.Routes() {
		registered = append(registered, r.Method+" "+r.Path)
	}
	var listed []string
	for k := range matrixRequests {
		listed = append(listed, k)
	}
	sort.Strings(listed)
	for _, r := range registered {
		if _, ok := matrixRequests[r]; !ok {
			t.Errorf("route %s is not in the permission matrix: add it to matrixRequests", r)
		}
	}
	for _, l := range listed {
		if !slices.Contains(registered, l) {
			t.Errorf("matrix lists %s, which is not registered", l)
		}
	}

	for _, route := range s.App.Routes.Routes() {
		entry, ok := matrixRequests[route.Method+" "+route.Path]
		if !ok {
			continue
		}
		req := matrixRequest(route.Method+" "+route.Path, entry)
		for _, role := range []string{"admin", "clerk", "viewer", "billing"} {
			want := slices.Contains(auth.BuiltinRoles[role], route.Permission)
			t.Run(route.Method+" "+route.Path+" as "+role, func(t *testing.T) {
				req.Key = keys[role]
				resp := s.Do(req)
				denied := resp.Status == 403 && resp.Code() == "forbidden"
				if resp.Status == 401 || denied == want {
					t.Fatalf("permission %s: got %d %s, want allowed=%v", route.Permission, resp.Status, resp.Body, want)
				}
			})
		}
	}
}
