package app_test

import (
	"testing"

	"github.com/tenantd/tenantd/internal/apptest"
)

// TestQueryGoDropsIsRefused: a query parameter Go's query parser would
// drop (a ';' in it, a malformed percent-escape) is a 422 problem+json
// naming it on tenant and operator routes alike, not a page answered as
// if the client had not sent it; a credential is still checked first.
func TestQueryGoDropsIsRefused(t *testing.T) {
	s, tn := apptest.NewWithTenant(t, "qstrict", "enterprise")
	createProduct(t, s, tn.Key, "QS-1", 1)

	cases := []struct {
		name      string
		req       apptest.Request
		wantField string
	}{
		{"a cursor with a ';'", apptest.Request{Method: "GET", Path: "/v1/products?after=ab;cd", Key: tn.Key}, "after"},
		{"a filter with a ';' beside a good limit", apptest.Request{Method: "GET", Path: "/v1/products?limit=1&sku=QS;1", Key: tn.Key}, "sku"},
		{"a malformed escape", apptest.Request{Method: "GET", Path: "/v1/products?sku=QS%zz", Key: tn.Key}, "sku"},
		{"an operator route", apptest.Request{Method: "GET", Path: "/admin/v1/tenants?after=ab;cd", Key: apptest.OperatorKey}, "after"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.Do(tc.req)
			if f := invalidField(t, resp); f != tc.wantField {
				t.Fatalf("422 names %q, want %q", f, tc.wantField)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json", ct)
			}
		})
	}

	t.Run("an escaped ';' is text", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products?sku=QS%3B1", Key: tn.Key})
		if f := invalidField(t, resp); f != "sku" {
			t.Fatalf("422 names %q, want sku (no SKU holds a ';')", f)
		}
		resp = s.Do(apptest.Request{Method: "GET", Path: "/v1/audit-events?resource=a%3Bb", Key: tn.Key})
		if resp.Status != 200 {
			t.Fatalf("got %d %s, want 200", resp.Status, resp.Body)
		}
	})

	t.Run("no credential is still 401", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products?after=ab;cd"})
		if resp.Status != 401 || resp.Code() != "unauthenticated" {
			t.Fatalf("got %d %s, want 401 unauthenticated", resp.Status, resp.Body)
		}
	})
}
