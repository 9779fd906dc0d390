package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
)

// expiresAt reads a key response's expires_at.
func expiresAt(t *testing.T, resp apptest.Response) time.Time {
	t.Helper()
	raw, _ := resp.Map(t)["expires_at"].(string)
	at, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		t.Fatalf("expires_at of %s: %v", resp.Body, err)
	}
	return at
}

func near(a, b time.Time) bool { return a.Sub(b).Abs() < time.Minute }

// TestKeyLifetime: no key lives longer than API_KEY_MAX_TTL (one year by
// default): a key without expires_at gets the maximum, a longer one is
// refused naming expires_at, and a key created by a key never outlives its
// creator.
func TestKeyLifetime(t *testing.T) {
	t.Run("default: one year", func(t *testing.T) {
		s, tn := apptest.NewWithTenant(t, "ttl", "pro")
		resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: tn.Key, Body: map[string]any{"name": "forever", "roles": []string{"viewer"}}})
		if resp.Status != 201 || !near(expiresAt(t, resp), time.Now().AddDate(0, 0, 365)) {
			t.Fatalf("no expires_at: got %d %s, want 201 expiring in 365 days", resp.Status, resp.Body)
		}
		resp = s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: tn.Key, Body: map[string]any{"name": "too long", "roles": []string{"viewer"},
			"expires_at": time.Now().AddDate(2, 0, 0).UTC().Format(time.RFC3339)}})
		if resp.Status != 422 || !strings.Contains(string(resp.Body), `"field":"expires_at"`) {
			t.Fatalf("two years: got %d %s, want 422 naming expires_at", resp.Status, resp.Body)
		}
		first := s.Do(apptest.Request{Method: "GET", Path: "/v1/api-keys", Key: tn.Key}).Map(t)["data"].([]any)[0].(map[string]any)
		if at, _ := time.Parse(time.RFC3339Nano, first["expires_at"].(string)); !near(at, time.Now().AddDate(0, 0, 365)) {
			t.Fatalf("the tenant's first admin key: expires_at %v, want in 365 days", first["expires_at"])
		}
	})

	t.Run("API_KEY_MAX_TTL, and a key's key", func(t *testing.T) {
		s := apptest.New(t, apptest.Options{Config: func(c *config.Config) { c.APIKeyMaxTTL = 2 * time.Hour }})
		tn := s.NewTenant("ttl-2h", "pro")
		resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: tn.Key, Body: map[string]any{"name": "creator", "roles": []string{"admin"},
			"expires_at": time.Now().Add(90 * time.Minute).UTC().Format(time.RFC3339)}})
		if resp.Status != 201 {
			t.Fatalf("90 minutes: got %d %s, want 201", resp.Status, resp.Body)
		}
		creatorExpiry := expiresAt(t, resp)
		creator := resp.Map(t)["secret"].(string)
		resp = s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: tn.Key, Body: map[string]any{"name": "3h", "roles": []string{"viewer"},
			"expires_at": time.Now().Add(3 * time.Hour).UTC().Format(time.RFC3339)}})
		if resp.Status != 422 || !strings.Contains(string(resp.Body), `"field":"expires_at"`) {
			t.Fatalf("three hours: got %d %s, want 422 naming expires_at", resp.Status, resp.Body)
		}
		resp = s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: creator, Body: map[string]any{"name": "child", "roles": []string{"viewer"}}})
		if resp.Status != 201 || !expiresAt(t, resp).Equal(creatorExpiry) {
			t.Fatalf("a key's key without expires_at: got %d %s, want it to expire with its creator at %v", resp.Status, resp.Body, creatorExpiry)
		}
		resp = s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: creator, Body: map[string]any{"name": "outliving", "roles": []string{"viewer"},
			"expires_at": creatorExpiry.Add(time.Minute).Format(time.RFC3339)}})
		if resp.Status != 422 || !strings.Contains(string(resp.Body), `"field":"expires_at"`) {
			t.Fatalf("a key's key outliving it: got %d %s, want 422 naming expires_at", resp.Status, resp.Body)
		}
		resp = s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: creator, Body: map[string]any{"name": "shorter", "roles": []string{"viewer"},
			"expires_at": time.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)}})
		if resp.Status != 201 {
			t.Fatalf("a key's key expiring first: got %d %s, want 201", resp.Status, resp.Body)
		}
	})
}
