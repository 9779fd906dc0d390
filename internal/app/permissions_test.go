package app_test

import (
	"slices"
	"sort"
	"testing"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/internal/apptest"
)

// matrixRequests holds one request for every route, keyed by the route as
// registered. A route registered without an entry here fails
// TestPermissionMatrix, so no route escapes the check.
var matrixRequests = map[string]apptest.Request{
	"GET /v1/tenant":                             {Method: "GET", Path: "/v1/tenant"},
	"PATCH /v1/tenant":                           {Method: "PATCH", Path: "/v1/tenant", Body: map[string]any{"name": "Matrix"}},
	"GET /v1/api-keys":                           {Method: "GET", Path: "/v1/api-keys"},
	"POST /v1/api-keys":                          {Method: "POST", Path: "/v1/api-keys", Body: map[string]any{"name": "m", "roles": []string{"viewer"}}},
	"DELETE /v1/api-keys/:id":                    {Method: "DELETE", Path: "/v1/api-keys/0190a0a0-0000-7000-8000-000000000001"},
	"GET /v1/members":                            {Method: "GET", Path: "/v1/members"},
	"POST /v1/members":                           {Method: "POST", Path: "/v1/members", Body: map[string]any{"email": "m@example.com", "roles": []string{"viewer"}}},
	"PATCH /v1/members/:id":                      {Method: "PATCH", Path: "/v1/members/0190a0a0-0000-7000-8000-000000000001", Body: map[string]any{"roles": []string{"viewer"}}},
	"DELETE /v1/members/:id":                     {Method: "DELETE", Path: "/v1/members/0190a0a0-0000-7000-8000-000000000001"},
	"GET /v1/roles":                              {Method: "GET", Path: "/v1/roles"},
	"POST /v1/roles":                             {Method: "POST", Path: "/v1/roles", Body: map[string]any{"name": "matrix", "permissions": []string{"products:read"}}},
	"PATCH /v1/roles/:name":                      {Method: "PATCH", Path: "/v1/roles/nope", Body: map[string]any{"permissions": []string{"products:read"}}},
	"DELETE /v1/roles/:name":                     {Method: "DELETE", Path: "/v1/roles/nope"},
	"GET /v1/products":                           {Method: "GET", Path: "/v1/products"},
	"POST /v1/products":                          {Method: "POST", Path: "/v1/products", Body: map[string]any{"sku": "M-1", "name": "M", "price": 1, "currency": "EUR", "stock": 1}},
	"GET /v1/products/:id":                       {Method: "GET", Path: "/v1/products/0190a0a0-0000-7000-8000-000000000001"},
	"PATCH /v1/products/:id":                     {Method: "PATCH", Path: "/v1/products/0190a0a0-0000-7000-8000-000000000001", Body: map[string]any{"name": "M"}},
	"DELETE /v1/products/:id":                    {Method: "DELETE", Path: "/v1/products/0190a0a0-0000-7000-8000-000000000001"},
	"POST /v1/products/:id/stock":                {Method: "POST", Path: "/v1/products/0190a0a0-0000-7000-8000-000000000001/stock", Body: map[string]any{"delta": 1, "reason": "m"}},
	"GET /v1/products/:id/reservations":          {Method: "GET", Path: "/v1/products/0190a0a0-0000-7000-8000-000000000001/reservations"},
	"POST /v1/orders":                            {Method: "POST", Path: "/v1/orders", Body: map[string]any{"customer_id": "c", "items": []map[string]any{{"product_id": "0190a0a0-0000-7000-8000-000000000001", "quantity": 1}}}},
	"GET /v1/orders":                             {Method: "GET", Path: "/v1/orders"},
	"GET /v1/orders/:id":                         {Method: "GET", Path: "/v1/orders/0190a0a0-0000-7000-8000-000000000001"},
	"POST /v1/orders/:id/cancel":                 {Method: "POST", Path: "/v1/orders/0190a0a0-0000-7000-8000-000000000001/cancel"},
	"GET /v1/orders/:id/events":                  {Method: "GET", Path: "/v1/orders/0190a0a0-0000-7000-8000-000000000001/events"},
	"POST /v1/payments":                          {Method: "POST", Path: "/v1/payments", Body: map[string]any{"order_id": "0190a0a0-0000-7000-8000-000000000001", "amount": 1, "currency": "EUR", "payment_method": "card"}},
	"GET /v1/payments":                           {Method: "GET", Path: "/v1/payments"},
	"GET /v1/payments/:id":                       {Method: "GET", Path: "/v1/payments/0190a0a0-0000-7000-8000-000000000001"},
	"POST /v1/payments/:id/refunds":              {Method: "POST", Path: "/v1/payments/0190a0a0-0000-7000-8000-000000000001/refunds", Body: map[string]any{"amount": 1}},
	"GET /v1/events":                             {Method: "GET", Path: "/v1/events"},
	"GET /v1/events/stream":                      {Method: "GET", Path: "/v1/events/stream?follow=false"},
	"GET /v1/audit-events":                       {Method: "GET", Path: "/v1/audit-events"},
	"GET /v1/usage":                              {Method: "GET", Path: "/v1/usage"},
	"GET /admin/v1/usage":                        {Method: "GET", Path: "/admin/v1/usage"},
	"POST /admin/v1/billing/exports":             {Method: "POST", Path: "/admin/v1/billing/exports", Body: map[string]any{"period": "2001-01", "format": "csv"}},
	"GET /admin/v1/billing/exports/:id/download": {Method: "GET", Path: "/admin/v1/billing/exports/0190a0a0-0000-7000-8000-000000000001/download"},
	"GET /admin/v1/plans":                        {Method: "GET", Path: "/admin/v1/plans"},
	"GET /admin/v1/audit-events":                 {Method: "GET", Path: "/admin/v1/audit-events"},
	"GET /admin/v1/dead-letters":                 {Method: "GET", Path: "/admin/v1/dead-letters"},
	"GET /admin/v1/dead-letters/:id":             {Method: "GET", Path: "/admin/v1/dead-letters/0190a0a0-0000-7000-8000-000000000001"},
	"POST /admin/v1/dead-letters/:id/replay":     {Method: "POST", Path: "/admin/v1/dead-letters/0190a0a0-0000-7000-8000-000000000001/replay"},
	"DELETE /admin/v1/dead-letters/:id":          {Method: "DELETE", Path: "/admin/v1/dead-letters/0190a0a0-0000-7000-8000-000000000001"},
	"GET /admin/v1/tenants":                      {Method: "GET", Path: "/admin/v1/tenants"},
	"POST /admin/v1/tenants":                     {Method: "POST", Path: "/admin/v1/tenants", Body: map[string]any{"slug": "matrix-x", "name": "M"}},
	"GET /admin/v1/tenants/:id":                  {Method: "GET", Path: "/admin/v1/tenants/0190a0a0-0000-7000-8000-000000000001"},
	"PATCH /admin/v1/tenants/:id":                {Method: "PATCH", Path: "/admin/v1/tenants/0190a0a0-0000-7000-8000-000000000001", Body: map[string]any{"name": "M"}},
	// Webhooks (each entry on two lines, so that gofmt keeps the alignment above).
	"GET /v1/webhooks": {Method: "GET",
		Path: "/v1/webhooks"},
	"POST /v1/webhooks": {Method: "POST", Path: "/v1/webhooks",
		Body: map[string]any{"url": "https://hooks.example.invalid/matrix", "event_types": []string{"*"}}},
	"GET /v1/webhooks/:id": {Method: "GET",
		Path: "/v1/webhooks/0190a0a0-0000-7000-8000-000000000001"},
	"PATCH /v1/webhooks/:id": {Method: "PATCH", Path: "/v1/webhooks/0190a0a0-0000-7000-8000-000000000001",
		Body: map[string]any{"description": "m"}},
	"DELETE /v1/webhooks/:id": {Method: "DELETE",
		Path: "/v1/webhooks/0190a0a0-0000-7000-8000-000000000001"},
	"POST /v1/webhooks/:id/rotate-secret": {Method: "POST",
		Path: "/v1/webhooks/0190a0a0-0000-7000-8000-000000000001/rotate-secret"},
	"POST /v1/webhooks/:id/test": {Method: "POST",
		Path: "/v1/webhooks/0190a0a0-0000-7000-8000-000000000001/test"},
	"POST /v1/webhooks/:id/recover": {Method: "POST", Path: "/v1/webhooks/0190a0a0-0000-7000-8000-000000000001/recover",
		Body: map[string]any{"since": "2026-01-01T00:00:00Z"}},
	"GET /v1/webhooks/:id/deliveries": {Method: "GET",
		Path: "/v1/webhooks/0190a0a0-0000-7000-8000-000000000001/deliveries"},
	"POST /v1/webhooks/:id/deliveries/:delivery_id/retry": {Method: "POST",
		Path: "/v1/webhooks/0190a0a0-0000-7000-8000-000000000001/deliveries/0190a0a0-0000-7000-8000-000000000002/retry"},
	// Tenant export and erasure (GDPR).
	"POST /v1/tenant/exports": {Method: "POST",
		Path: "/v1/tenant/exports"},
	"GET /v1/tenant/exports/:id": {Method: "GET",
		Path: "/v1/tenant/exports/0190a0a0-0000-7000-8000-000000000001"},
	"GET /v1/tenant/exports/:id/download": {Method: "GET",
		Path: "/v1/tenant/exports/0190a0a0-0000-7000-8000-000000000001/download"},
	"DELETE /admin/v1/tenants/:id": {Method: "DELETE",
		Path: "/admin/v1/tenants/0190a0a0-0000-7000-8000-000000000001?confirm=matrix"},
}

// TestPermissionMatrix checks, through the real HTTP stack, every route
// against every built-in role: allowed exactly when the role has the route's
// permission. Operator routes refuse every tenant role.
func TestPermissionMatrix(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	tn := s.CreateTenant(slug("matrix"), "pro")
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
		req, ok := matrixRequests[route.Method+" "+route.Path]
		if !ok {
			continue
		}
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
