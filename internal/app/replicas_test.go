package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
)

// eventually polls cond every 20 ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// TestKeyRevocationReachesOtherReplicas: two servers on one database and
// Redis, with a long key cache; a key revoked on one stops working on the
// other at once, and also when the revocation happened while Redis was
// down (the cache is dropped on resubscription).
func TestKeyRevocationReachesOtherReplicas(t *testing.T) {
	longCache := apptest.Options{Config: func(c *config.Config) { c.APIKeyCacheTTL = 10 * time.Minute }}
	a := apptest.New(t, longCache)
	b := apptest.New(t, longCache)
	tn := a.CreateTenant(slug("replica"), "pro")
	status := func(s *apptest.Server, key string) int {
		return s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: key}).Status
	}

	t.Run("revoked on A, refused on B", func(t *testing.T) {
		key := a.CreateKey(tn.Key, "viewer")
		if got := status(b, key); got != 200 { // now cached on B
			t.Fatalf("B before revoke: got %d, want 200", got)
		}
		id := keyID(t, a, tn.Key, key)
		if resp := a.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + id, Key: tn.Key}); resp.Status != 204 {
			t.Fatalf("revoke: got %d", resp.Status)
		}
		took := eventually(t, time.Second, "B refuses the revoked key", func() bool { return status(b, key) == 401 })
		t.Logf("revocation reached the other replica in %v", took)
	})

	t.Run("revoked while Redis was down", func(t *testing.T) {
		key := a.CreateKey(tn.Key, "viewer")
		if got := status(b, key); got != 200 {
			t.Fatalf("B before revoke: got %d, want 200", got)
		}
		id := keyID(t, a, tn.Key, key)
		a.Env.Redis.StopRedis()
		resp := a.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + id, Key: tn.Key})
		if err := a.Env.Redis.StartRedis(context.Background()); err != nil {
			t.Fatalf("restart redis: %v", err)
		}
		if resp.Status != 204 {
			t.Fatalf("revoke with Redis down: got %d %s, want 204", resp.Status, resp.Body)
		}
		eventually(t, 5*time.Second, "B refuses the key revoked while Redis was down", func() bool { return status(b, key) == 401 })
	})
}
