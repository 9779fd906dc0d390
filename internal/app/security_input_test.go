package app_test

import (
	"strings"
	"testing"

	"github.com/tenantd/tenantd/internal/apptest"
)

// TestControlCharactersAreRefused: U+0000, escaped or raw, and other
// control characters in any text of a body or a query parameter are a 422
// naming the field, never a 500; one-line fields (names, subjects,
// audiences) refuse tab and line breaks too.
func TestControlCharactersAreRefused(t *testing.T) {
	s, tn := apptest.NewWithTenant(t, "nul", "enterprise")
	product := createProduct(t, s, tn.Key, "NUL-1", 5)
	item := `"items":[{"product_id":"` + product + `","quantity":1}]`

	cases := []struct {
		name      string
		req       apptest.Request
		wantField string
	}{
		{"order customer_id, escaped NUL", apptest.Request{Method: "POST", Path: "/v1/orders", Body: `{"customer_id":"c\u0000d",` + item + `}`}, "customer_id"},
		{"order customer_id, raw NUL", apptest.Request{Method: "POST", Path: "/v1/orders", Body: "{\"customer_id\":\"c\x00d\"," + item + "}"}, "customer_id"},
		{"order customer_id, escape character", apptest.Request{Method: "POST", Path: "/v1/orders", Body: `{"customer_id":"c\u001b[2J",` + item + `}`}, "customer_id"},
		{"order customer_id, C1 control", apptest.Request{Method: "POST", Path: "/v1/orders", Body: `{"customer_id":"c\u009b",` + item + `}`}, "customer_id"},
		{"key name, NUL", apptest.Request{Method: "POST", Path: "/v1/api-keys", Body: `{"name":"k\u0000","roles":["viewer"]}`}, "name"},
		{"key name, line feed", apptest.Request{Method: "POST", Path: "/v1/api-keys", Body: `{"name":"k\nk","roles":["viewer"]}`}, "name"},
		{"key role, NUL", apptest.Request{Method: "POST", Path: "/v1/api-keys", Body: `{"name":"k","roles":["vi\u0000ewer"]}`}, "roles[0]"},
		{"tenant name, NUL", apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: `{"name":"T\u0000"}`}, "name"},
		{"tenant name, raw NUL", apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: "{\"name\":\"T\x00\"}"}, "name"},
		{"tenant name, tab", apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: `{"name":"T\tT"}`}, "name"},
		{"tenant settings, audience NUL", apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: `{"settings":{"oidc":{"issuer":"https://login.example.com","audience":"a\u0000"}}}`}, "settings.oidc.audience"},
		{"tenant settings, audience line feed", apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: `{"settings":{"oidc":{"issuer":"https://login.example.com","audience":"a\nb"}}}`}, "settings.oidc.audience"},
		{"tenant settings, issuer NUL", apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: `{"settings":{"oidc":{"issuer":"https://login.example.com/\u0000","audience":"a"}}}`}, "settings.oidc.issuer"},
		{"tenant settings, CORS origin NUL", apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: `{"settings":{"cors_origins":["https://a.example","https://b\u0000"]}}`}, "settings.cors_origins[1]"},
		{"tenant settings, CORS origin line feed", apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: `{"settings":{"cors_origins":["https://a.example\n"]}}`}, "settings.cors_origins"},
		{"member subject, NUL", apptest.Request{Method: "POST", Path: "/v1/members", Body: `{"subject":"s\u0000","roles":["viewer"]}`}, "subject"},
		{"member email, NUL", apptest.Request{Method: "POST", Path: "/v1/members", Body: `{"email":"a\u0000@example.com","roles":["viewer"]}`}, "email"},
		{"role name, NUL", apptest.Request{Method: "POST", Path: "/v1/roles", Body: `{"name":"r\u0000","permissions":["products:read"]}`}, "name"},
		{"product name, DEL", apptest.Request{Method: "POST", Path: "/v1/products", Body: `{"sku":"D-1","name":"a\u007f","price":1,"currency":"EUR","stock":1}`}, "name"},
		{"a key of an object", apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: `{"na\u0000me":"T"}`}, "body"},
		{"admin tenant name, NUL", apptest.Request{Method: "POST", Path: "/admin/v1/tenants", Key: apptest.OperatorKey, Body: `{"slug":"` + apptest.Slug("nul-x") + `","name":"N\u0000"}`}, "name"},
		{"admin tenant rename, NUL", apptest.Request{Method: "PATCH", Path: "/admin/v1/tenants/" + tn.ID, Key: apptest.OperatorKey, Body: `{"name":"N\u0000"}`}, "name"},
		{"admin tenant rename, line feed", apptest.Request{Method: "PATCH", Path: "/admin/v1/tenants/" + tn.ID, Key: apptest.OperatorKey, Body: `{"name":"N\nN"}`}, "name"},
		{"audit actor filter", apptest.Request{Method: "GET", Path: "/v1/audit-events?actor=api_key:%00"}, "actor"},
		{"audit action filter", apptest.Request{Method: "GET", Path: "/v1/audit-events?action=a%01*"}, "action"},
		{"audit resource filter", apptest.Request{Method: "GET", Path: "/v1/audit-events?resource=%00"}, "resource"},
		{"audit filter, invalid UTF-8", apptest.Request{Method: "GET", Path: "/v1/audit-events?actor=%FF"}, "actor"},
		{"events type filter", apptest.Request{Method: "GET", Path: "/v1/events?type=order.placed%00"}, "type"},
		{"orders status filter", apptest.Request{Method: "GET", Path: "/v1/orders?status=%00"}, "status"},
		{"products sku filter", apptest.Request{Method: "GET", Path: "/v1/products?sku=%00"}, "sku"},
		{"usage period", apptest.Request{Method: "GET", Path: "/v1/usage?period=%00"}, "period"},
		{"role in the path", apptest.Request{Method: "DELETE", Path: "/v1/roles/r%00"}, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req.Key == "" {
				tc.req.Key = tn.Key
			}
			resp := s.Do(tc.req)
			if resp.Status != 422 || resp.Code() != "validation_failed" {
				t.Fatalf("got %d %s, want 422 validation_failed", resp.Status, resp.Body)
			}
			if !strings.Contains(string(resp.Body), `"field":"`+tc.wantField+`"`) {
				t.Fatalf("got %s, want the field %q named", resp.Body, tc.wantField)
			}
		})
	}
	t.Run("multi-line text and other scripts pass the rule", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: tn.Key, Body: `{"name":"Zürich – 東京 😀"}`})
		if resp.Status != 200 {
			t.Fatalf("got %d %s, want 200", resp.Status, resp.Body)
		}
		resp = s.Do(apptest.Request{Method: "GET", Path: "/v1/audit-events?actor=user:z%C3%BCrich", Key: tn.Key})
		if resp.Status != 200 {
			t.Fatalf("got %d %s, want 200", resp.Status, resp.Body)
		}
	})
	t.Run("nothing was written", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/members", Key: tn.Key})
		if data := resp.Map(t)["data"].([]any); len(data) != 0 {
			t.Fatalf("got %d members, want 0", len(data))
		}
	})
}
