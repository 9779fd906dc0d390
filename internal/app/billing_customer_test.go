package app_test

import (
	"strings"
	"testing"

	"github.com/tenantd/tenantd/internal/apptest"
)

// TestBillingCustomerID: an operator sets a tenant's billing_customer_id
// with PATCH /admin/v1/tenants/{id}; GET shows it (null until set), ""
// clears it, a malformed one is 422 naming the field, an unknown tenant is
// 404, and a tenant's own PATCH /v1/tenant cannot set it.
func TestBillingCustomerID(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "billcust", "pro")
	path := "/admin/v1/tenants/" + a.ID
	customerOf := func(t *testing.T) any {
		t.Helper()
		resp := s.Do(apptest.Request{Method: "GET", Path: path, Key: apptest.OperatorKey})
		if resp.Status != 200 {
			t.Fatalf("GET %s: got %d %s, want 200", path, resp.Status, resp.Body)
		}
		m := resp.Map(t)
		v, ok := m["billing_customer_id"]
		if !ok {
			t.Fatalf("GET %s: got no billing_customer_id in %s, want the field (null when unset)", path, resp.Body)
		}
		return v
	}
	if got := customerOf(t); got != nil {
		t.Fatalf("new tenant: got billing_customer_id %v, want null", got)
	}

	steps := []struct {
		name, body string
		status     int
		want       any // billing_customer_id afterwards
		field      string
	}{
		{"set", `{"billing_customer_id":"cus_NffrFeUfNV2Hib"}`, 200, "cus_NffrFeUfNV2Hib", ""},
		{"another provider's id", `{"billing_customer_id":"lago:acme/eu-1@prod"}`, 200, "lago:acme/eu-1@prod", ""},
		{"null leaves it", `{"billing_customer_id":null,"name":"Renamed"}`, 200, "lago:acme/eu-1@prod", ""},
		{"spaces refused", `{"billing_customer_id":"cus 1"}`, 422, "lago:acme/eu-1@prod", "billing_customer_id"},
		{"leading dash refused", `{"billing_customer_id":"-cus"}`, 422, "lago:acme/eu-1@prod", "billing_customer_id"},
		{"too long refused", `{"billing_customer_id":"` + strings.Repeat("c", 201) + `"}`, 422, "lago:acme/eu-1@prod", "billing_customer_id"},
		{"not a string refused", `{"billing_customer_id":42}`, 422, "lago:acme/eu-1@prod", ""},
		{"empty clears it", `{"billing_customer_id":""}`, 200, nil, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			resp := s.Do(apptest.Request{Method: "PATCH", Path: path, Key: apptest.OperatorKey, Body: st.body})
			if resp.Status != st.status {
				t.Fatalf("PATCH %s: got %d %s, want %d", st.body, resp.Status, resp.Body, st.status)
			}
			if st.field != "" && !strings.Contains(string(resp.Body), `"`+st.field+`"`) {
				t.Errorf("PATCH %s: got %s, want an error naming %s", st.body, resp.Body, st.field)
			}
			if st.status == 200 {
				if got := resp.Map(t)["billing_customer_id"]; got != st.want {
					t.Errorf("PATCH %s answered billing_customer_id %v, want %v", st.body, got, st.want)
				}
			}
			if got := customerOf(t); got != st.want {
				t.Errorf("after PATCH %s: got billing_customer_id %v, want %v", st.body, got, st.want)
			}
		})
	}

	t.Run("unknown tenant", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "PATCH", Path: "/admin/v1/tenants/0190a0a0-0000-7000-8000-00000000dead",
			Key: apptest.OperatorKey, Body: `{"billing_customer_id":"cus_x"}`})
		if resp.Status != 404 {
			t.Errorf("got %d %s, want 404", resp.Status, resp.Body)
		}
	})
	t.Run("the tenant cannot set it", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: a.Key, Body: `{"billing_customer_id":"cus_mine"}`})
		if resp.Status != 422 {
			t.Errorf("PATCH /v1/tenant with billing_customer_id: got %d %s, want 422 (unknown field)", resp.Status, resp.Body)
		}
		if got := customerOf(t); got != nil {
			t.Errorf("after the tenant's PATCH: got billing_customer_id %v, want null", got)
		}
	})
}
