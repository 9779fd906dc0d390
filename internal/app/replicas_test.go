package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestKeyRevocationReachesOtherReplicas: two servers on one database and
// Redis, with a long key cache; a key revoked on one stops working on the
// other at once, and also when the revocation happened while Redis was
// down (the cache is dropped on resubscription).
func TestKeyRevocationReachesOtherReplicas(t *testing.T) {
	rs := testenv.PrivateRedis(t) // stopped below: a Redis of the test's own
	longCache := apptest.Options{RedisURL: rs.URL, Config: func(c *config.Config) { c.APIKeyCacheTTL = 10 * time.Minute }}
	a := apptest.New(t, longCache)
	b := apptest.New(t, longCache)
	tn := a.NewTenant("replica", "pro")
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
		took := testenv.Eventually(t, time.Second, func() (bool, string) { return status(b, key) == 401, "B refuses the revoked key" })
		t.Logf("revocation reached the other replica in %v", took)
	})

	t.Run("revoked while Redis was down", func(t *testing.T) {
		key := a.CreateKey(tn.Key, "viewer")
		if got := status(b, key); got != 200 {
			t.Fatalf("B before revoke: got %d, want 200", got)
		}
		id := keyID(t, a, tn.Key, key)
		rs.Stop()
		resp := a.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + id, Key: tn.Key})
		if err := rs.Start(context.Background()); err != nil {
			t.Fatalf("restart redis: %v", err)
		}
		if resp.Status != 204 {
			t.Fatalf("revoke with Redis down: got %d %s, want 204", resp.Status, resp.Body)
		}
		testenv.Eventually(t, 5*time.Second, func() (bool, string) { return status(b, key) == 401, "B refuses the key revoked while Redis was down" })
	})
}
