package auth

import (
	"fmt"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestUnknownPrefixForgottenWhenIssued: a prefix cached as unknown (401
// without a lookup for 30 s) is forgotten when a key with it is created,
// on the replica that creates it at once and on the others through the
// invalidation channel; an unknown prefix is looked up once.
func TestUnknownPrefixForgottenWhenIssued(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	tenantID := testenv.NewTenant(t).ID
	log := testenv.Logger()
	one := NewService(env.OpenDB(t, 2), env.RedisClient(t), 10*time.Second, log)
	two := NewService(env.OpenDB(t, 2), env.RedisClient(t), 10*time.Second, log)
	testenv.Background(t, two.ListenForInvalidations)
	// The listener is subscribed once it hears a message.
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		one.invalidate(ctx, "key:probe")
		return two.recent.Contains("probe"), "replica two hears the invalidation channel"
	})

	key, prefix := generateKey()
	one.newKey = func() (string, string) { return key, prefix }
	for _, s := range []*Service{one, two} {
		for range 2 {
			if _, err := s.Authenticate(ctx, key); err != ErrUnauthenticated {
				t.Fatalf("before creation: got %v, want ErrUnauthenticated", err)
			}
		}
		if !s.unknown.Contains(prefix) {
			t.Fatalf("before creation: prefix not cached as unknown")
		}
	}
	actor := identity.Principal{Kind: identity.KindUser, TenantID: tenantID, Subject: "admin", Roles: []string{"admin"}}
	k, secret, err := one.CreateKey(ctx, actor, NewKey{Name: "guessed", Roles: []string{"viewer"}})
	if err != nil || secret != key {
		t.Fatalf("create key: got %v (secret %t), want the planned key", err, secret == key)
	}
	if p, err := one.Authenticate(ctx, key); err != nil || p.KeyID != k.ID {
		t.Fatalf("creating replica, right after the creation: got %v, want the new key", err)
	}
	testenv.Eventually(t, 2*time.Second, func() (bool, string) {
		p, err := two.Authenticate(ctx, key)
		return err == nil && p.KeyID == k.ID, fmt.Sprintf("other replica after the creation: got %v, want the new key (its prefix was still cached as unknown)", err)
	})
	// A prefix announced lately is not cached as unknown again, even by a
	// lookup that missed it (one that began before the key committed).
	two.rememberUnknown(prefix)
	if two.unknown.Contains(prefix) {
		t.Error("a prefix announced lately was cached as unknown")
	}
}
