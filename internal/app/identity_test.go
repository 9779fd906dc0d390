package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestCrossTenantIdentity: an admin of A can never read or change B's
// members, roles, keys or settings.
func TestCrossTenantIdentity(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "idn-a", "pro")
	b := s.NewTenant("idn-b", "pro")
	bMember := addMember(t, s, b.Key, map[string]any{"email": "b-user@example.com", "roles": []string{"viewer"}})
	if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: b.Key,
		Body: map[string]any{"name": "b-stocker", "permissions": []string{"products:write"}}}); resp.Status != 201 {
		t.Fatalf("create B's role: got %d %s", resp.Status, resp.Body)
	}
	bKeyResp := s.Do(apptest.Request{Method: "GET", Path: "/v1/api-keys", Key: b.Key})
	bKey := bKeyResp.Map(t)["data"].([]any)[0].(map[string]any)["id"].(string)

	for _, tc := range []struct {
		name string
		req  apptest.Request
		want int
	}{
		{"patch B's member", apptest.Request{Method: "PATCH", Path: "/v1/members/" + bMember, Body: map[string]any{"roles": []string{"admin"}}}, 404},
		{"delete B's member", apptest.Request{Method: "DELETE", Path: "/v1/members/" + bMember}, 404},
		{"patch B's role", apptest.Request{Method: "PATCH", Path: "/v1/roles/b-stocker", Body: map[string]any{"permissions": []string{"products:read"}}}, 404},
		{"delete B's role", apptest.Request{Method: "DELETE", Path: "/v1/roles/b-stocker"}, 404},
		{"revoke B's key", apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + bKey}, 404},
		{"give a key B's role", apptest.Request{Method: "POST", Path: "/v1/api-keys", Body: map[string]any{"name": "x", "roles": []string{"b-stocker"}}}, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Key = a.Key
			if resp := s.Do(tc.req); resp.Status != tc.want {
				t.Fatalf("got %d %s, want %d", resp.Status, resp.Body, tc.want)
			}
		})
	}
	t.Run("lists and settings show only A", func(t *testing.T) {
		for _, path := range []string{"/v1/members", "/v1/roles", "/v1/api-keys", "/v1/tenant"} {
			body := string(s.Do(apptest.Request{Method: "GET", Path: path, Key: a.Key}).Body)
			for _, secret := range []string{bMember, "b-stocker", bKey, b.ID, b.Slug} {
				if contains(body, secret) {
					t.Fatalf("%s as A shows %q of B: %s", path, secret, body)
				}
			}
		}
	})
	t.Run("B is unchanged", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/members", Key: b.Key})
		if !contains(string(resp.Body), bMember) {
			t.Fatalf("B's member is gone: %s", resp.Body)
		}
	})
}

func contains(s, sub string) bool {
	return sub != "" && strings.Contains(s, sub)
}

// TestRoleChangeReachesOtherReplica: two servers on one database and Redis;
// a permission taken from a custom role on one is denied on the other
// within one second.
func TestRoleChangeReachesOtherReplica(t *testing.T) {
	one := apptest.New(t, apptest.Options{})
	two := apptest.New(t, apptest.Options{})
	tn := one.NewTenant("rolerep", "pro")
	if resp := one.Do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: tn.Key,
		Body: map[string]any{"name": "stocker", "permissions": []string{"products:read", "products:write"}}}); resp.Status != 201 {
		t.Fatalf("create role: got %d %s", resp.Status, resp.Body)
	}
	key := one.CreateKey(tn.Key, "stocker")
	n := 0
	create := func(s *apptest.Server) int {
		n++
		return s.Do(apptest.Request{Method: "POST", Path: "/v1/products", Key: key,
			Body: map[string]any{"sku": "R-" + time.Now().Format("150405.000000") + string(rune('a'+n%26)), "name": "R", "price": 1, "currency": "EUR", "stock": 1}}).Status
	}
	if got := create(two); got != 201 {
		t.Fatalf("on replica two before the change: got %d, want 201", got)
	}
	if resp := one.Do(apptest.Request{Method: "PATCH", Path: "/v1/roles/stocker", Key: tn.Key,
		Body: map[string]any{"permissions": []string{"products:read"}}}); resp.Status != 200 {
		t.Fatalf("revoke products:write: got %d %s", resp.Status, resp.Body)
	}
	took := testenv.Eventually(t, time.Second, func() (bool, string) { return create(two) == 403, "replica two denies" })
	t.Logf("the role change reached replica two in %v", took)
}
