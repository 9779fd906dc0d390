package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
)

func createProduct(t *testing.T, s *apptest.Server, key, sku string, stock int) string {
	t.Helper()
	resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/products", Key: key,
		Body: map[string]any{"sku": sku, "name": "Product " + sku, "price": 1000, "currency": "EUR", "stock": stock}})
	if resp.Status != http.StatusCreated {
		t.Fatalf("create product %s: got %d %s, want 201", sku, resp.Status, resp.Body)
	}
	return resp.Map(t)["id"].(string)
}

// TestCrossTenantIsolation: tenant A's credentials never reach B's data.
func TestCrossTenantIsolation(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "iso-a", "pro")
	b := s.NewTenant("iso-b", "pro")
	// The same SKU in both tenants is fine.
	aProduct := createProduct(t, s, a.Key, "SAME-SKU", 5)
	bProduct := createProduct(t, s, b.Key, "SAME-SKU", 7)
	bKeyResp := s.Do(apptest.Request{Method: "GET", Path: "/v1/api-keys", Key: b.Key})
	bKeyID := bKeyResp.Map(t)["data"].([]any)[0].(map[string]any)["id"].(string)
	bHook := s.Do(apptest.Request{Method: "POST", Path: "/v1/webhooks", Key: b.Key,
		Body: map[string]any{"url": "https://hooks.example.invalid/b", "event_types": []string{"*"}}})
	bHookPath := "/v1/webhooks/" + bHook.Map(t)["id"].(string)
	bTest := s.Do(apptest.Request{Method: "POST", Path: bHookPath + "/test", Key: b.Key})
	bDeliveryPath := bHookPath + "/deliveries/" + bTest.Map(t)["id"].(string)
	bExport := s.Do(apptest.Request{Method: "POST", Path: "/v1/tenant/exports", Key: b.Key})
	bExportPath := "/v1/tenant/exports/" + bExport.Map(t)["id"].(string)

	cases := []struct {
		name       string
		req        apptest.Request
		wantStatus int
		wantCode   string
	}{
		{"get B's product", apptest.Request{Method: "GET", Path: "/v1/products/" + bProduct}, 404, "not_found"},
		{"patch B's product", apptest.Request{Method: "PATCH", Path: "/v1/products/" + bProduct, Body: map[string]any{"name": "mine"}}, 404, "not_found"},
		{"delete B's product", apptest.Request{Method: "DELETE", Path: "/v1/products/" + bProduct}, 404, "not_found"},
		{"adjust B's stock", apptest.Request{Method: "POST", Path: "/v1/products/" + bProduct + "/stock", Body: map[string]any{"delta": -1, "reason": "theft"}}, 404, "not_found"},
		{"revoke B's key", apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + bKeyID}, 404, "not_found"},
		{"get B's webhook", apptest.Request{Method: "GET", Path: bHookPath}, 404, "not_found"},
		{"patch B's webhook", apptest.Request{Method: "PATCH", Path: bHookPath, Body: map[string]any{"url": "https://evil.example.com/"}}, 404, "not_found"},
		{"delete B's webhook", apptest.Request{Method: "DELETE", Path: bHookPath}, 404, "not_found"},
		{"rotate B's webhook secret", apptest.Request{Method: "POST", Path: bHookPath + "/rotate-secret"}, 404, "not_found"},
		{"test B's webhook", apptest.Request{Method: "POST", Path: bHookPath + "/test"}, 404, "not_found"},
		{"recover B's webhook", apptest.Request{Method: "POST", Path: bHookPath + "/recover", Body: map[string]any{"since": "2026-01-01T00:00:00Z"}}, 404, "not_found"},
		{"list B's webhook deliveries", apptest.Request{Method: "GET", Path: bHookPath + "/deliveries"}, 404, "not_found"},
		{"retry B's webhook delivery", apptest.Request{Method: "POST", Path: bDeliveryPath + "/retry"}, 404, "not_found"},
		{"read B's export", apptest.Request{Method: "GET", Path: bExportPath}, 404, "not_found"},
		{"download B's export", apptest.Request{Method: "GET", Path: bExportPath + "/download"}, 404, "not_found"},
		{"name B by slug", apptest.Request{Method: "GET", Path: "/v1/products", Header: map[string]string{"X-Tenant": b.Slug}}, 403, "tenant_mismatch"},
		{"name B by id", apptest.Request{Method: "GET", Path: "/v1/products", Header: map[string]string{"X-Tenant": b.ID}}, 403, "tenant_mismatch"},
		{"name self by slug", apptest.Request{Method: "GET", Path: "/v1/products", Header: map[string]string{"X-Tenant": a.Slug}}, 200, ""},
		{"name self by id", apptest.Request{Method: "GET", Path: "/v1/products/" + aProduct, Header: map[string]string{"X-Tenant": a.ID}}, 200, ""},
		{"operator route with tenant key", apptest.Request{Method: "GET", Path: "/admin/v1/tenants"}, 403, "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Key = a.Key
			resp := s.Do(tc.req)
			if resp.Status != tc.wantStatus || resp.Code() != tc.wantCode {
				t.Fatalf("got %d %q (%s), want %d %q", resp.Status, resp.Code(), resp.Body, tc.wantStatus, tc.wantCode)
			}
		})
	}

	t.Run("B's product is untouched", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products/" + bProduct, Key: b.Key})
		m := resp.Map(t)
		if resp.Status != 200 || m["name"] != "Product SAME-SKU" || m["stock"] != float64(7) {
			t.Fatalf("got %d %s, want B's product unchanged", resp.Status, resp.Body)
		}
	})
	t.Run("B's webhook is untouched", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: bHookPath, Key: b.Key})
		m := resp.Map(t)
		if resp.Status != 200 || m["url"] != "https://hooks.example.invalid/b" || m["status"] != "enabled" || m["previous_secret_expires_at"] != nil {
			t.Fatalf("got %d %s, want B's webhook unchanged", resp.Status, resp.Body)
		}
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/webhooks", Key: a.Key}); len(resp.Map(t)["data"].([]any)) != 0 {
			t.Fatalf("got A's webhook list %s, want empty", resp.Body)
		}
	})
	t.Run("lists show only own rows", func(t *testing.T) {
		for _, tc := range []struct{ key, wantID string }{{a.Key, aProduct}, {b.Key, bProduct}} {
			resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tc.key})
			data := resp.Map(t)["data"].([]any)
			if len(data) != 1 || data[0].(map[string]any)["id"] != tc.wantID {
				t.Fatalf("got %s, want only %s", resp.Body, tc.wantID)
			}
		}
	})
	t.Run("subdomain must match", func(t *testing.T) {
		s := apptest.New(t, apptest.Options{Config: func(c *config.Config) { c.BaseDomain = "tenantd.test" }})
		for _, tc := range []struct {
			host string
			want int
		}{{a.Slug + ".tenantd.test", 200}, {b.Slug + ".tenantd.test:8080", 403}, {"tenantd.test", 200}} {
			resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: a.Key, Header: map[string]string{"Host": tc.host}})
			if resp.Status != tc.want {
				t.Fatalf("host %s: got %d %s, want %d", tc.host, resp.Status, resp.Body, tc.want)
			}
		}
	})
}

// TestCredentials: missing, malformed, revoked and expired keys get 401; a
// suspended tenant gets 403 until reactivated.
func TestCredentials(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "cred", "free")
	get := func(key string) apptest.Response {
		return s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: key})
	}
	for _, key := range []string{"", "nonsense", "tk_short_x", a.Key + "x", "tk_" + strings.Repeat("a", 16) + "_" + strings.Repeat("b", 52)} {
		if resp := get(key); resp.Status != 401 || resp.Code() != "unauthenticated" || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("key %q: got %d %q, want 401 unauthenticated with WWW-Authenticate", key, resp.Status, resp.Code())
		}
	}
	t.Run("revoked key stops at once", func(t *testing.T) {
		key := s.CreateKey(a.Key, "viewer")
		if resp := get(key); resp.Status != 200 {
			t.Fatalf("fresh key: got %d, want 200", resp.Status)
		}
		id := keyID(t, s, a.Key, key)
		if resp := s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + id, Key: a.Key}); resp.Status != 204 {
			t.Fatalf("revoke: got %d %s, want 204", resp.Status, resp.Body)
		}
		if resp := get(key); resp.Status != 401 {
			t.Fatalf("revoked key: got %d, want 401", resp.Status)
		}
		if resp := s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + id, Key: a.Key}); resp.Status != 404 {
			t.Fatalf("revoke twice: got %d, want 404", resp.Status)
		}
	})
	t.Run("expired key", func(t *testing.T) {
		key := s.CreateKey(a.Key, "viewer")
		id := keyID(t, s, a.Key, key)
		owner := s.Env.OpenOwnerDB(t)
		err := owner.WithTenant(context.Background(), uuid.MustParse(a.ID), func(tx *gorm.DB) error {
			return tx.Exec("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = ?", id).Error
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp := get(key); resp.Status != 401 {
			t.Fatalf("expired key: got %d, want 401", resp.Status)
		}
	})
	t.Run("expires_at in the past is refused", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: a.Key,
			Body: map[string]any{"name": "old", "roles": []string{"viewer"}, "expires_at": "2001-01-01T00:00:00Z"}})
		if resp.Status != 422 || !strings.Contains(string(resp.Body), "expires_at") {
			t.Fatalf("got %d %s, want 422 naming expires_at", resp.Status, resp.Body)
		}
	})
	t.Run("suspension", func(t *testing.T) {
		patch := func(status string) {
			resp := s.Do(apptest.Request{Method: "PATCH", Path: "/admin/v1/tenants/" + a.ID, Key: apptest.OperatorKey,
				Body: map[string]string{"status": status}})
			if resp.Status != 200 || resp.Map(t)["status"] != status {
				t.Fatalf("set status %s: got %d %s", status, resp.Status, resp.Body)
			}
		}
		patch("suspended")
		if resp := get(a.Key); resp.Status != 403 || resp.Code() != "tenant_suspended" {
			t.Fatalf("suspended: got %d %q, want 403 tenant_suspended", resp.Status, resp.Code())
		}
		patch("active")
		if resp := get(a.Key); resp.Status != 200 {
			t.Fatalf("reactivated: got %d, want 200", resp.Status)
		}
	})
}

func keyID(t *testing.T, s *apptest.Server, adminKey, secret string) string {
	t.Helper()
	resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/api-keys?limit=200", Key: adminKey})
	for _, k := range resp.Map(t)["data"].([]any) {
		m := k.(map[string]any)
		if strings.HasPrefix(secret, "tk_"+m["prefix"].(string)+"_") {
			return m["id"].(string)
		}
	}
	t.Fatalf("key not listed")
	return ""
}

// TestPooledConnectionsNeverCarryATenant sends many interleaved requests for
// two tenants through a pool of two connections and checks every answer.
func TestPooledConnectionsNeverCarryATenant(t *testing.T) {
	s := apptest.New(t, apptest.Options{MaxConns: 2})
	// enterprise: 800 requests at once stay within its burst (rate limits
	// are not what this test is about).
	tenants := []apptest.Tenant{s.NewTenant("pool-a", "enterprise"), s.NewTenant("pool-b", "enterprise")}
	want := make([]string, 2)
	for i, tn := range tenants {
		want[i] = createProduct(t, s, tn.Key, fmt.Sprintf("POOL-%d", i), 1)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 400)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				n := (w + i) % 2
				resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tenants[n].Key})
				body := string(resp.Body)
				if resp.Status != 200 || !strings.Contains(body, want[n]) || strings.Contains(body, want[1-n]) {
					errs <- fmt.Sprintf("tenant %d: got %d %s, want only %s", n, resp.Status, body, want[n])
					return
				}
				other := s.Do(apptest.Request{Method: "GET", Path: "/v1/products/" + want[1-n], Key: tenants[n].Key})
				if other.Status != 404 {
					errs <- fmt.Sprintf("tenant %d read the other's product: got %d", n, other.Status)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
