package app_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// allPermissions is a custom role with every permission: it may act on
// admins, but it is not the admin role, so it is no admin itself.
func allPermissions(t *testing.T, s *apptest.Server, adminKey string) string {
	t.Helper()
	if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: adminKey,
		Body: map[string]any{"name": "root", "permissions": permsOf("admin")}}); resp.Status != 201 {
		t.Fatalf("create role root: got %d %s", resp.Status, resp.Body)
	}
	_, key := newKey(t, s, adminKey, map[string]any{"roles": []string{"root"}})
	return key
}

func wantLastAdmin(t *testing.T, what string, resp apptest.Response) {
	t.Helper()
	if resp.Status != 409 || resp.Code() != "last_admin" || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s: got %d %s, want 409 last_admin", what, resp.Status, resp.Body)
	}
}

// TestLastAdmin: the last credential that can act as the tenant's admin
// (a live admin key, or an active admin member bound to the registered
// issuer) is never revoked, removed or demoted: 409 last_admin. Pending
// invitations, expired keys and members of another issuer do not count.
func TestLastAdmin(t *testing.T) {
	s := apptest.New(t, apptest.Options{})

	t.Run("the only admin key", func(t *testing.T) {
		tn := s.NewTenant("la-key", "pro")
		root := allPermissions(t, s, tn.Key)
		first := keyID(t, s, tn.Key, tn.Key)
		wantLastAdmin(t, "revoke itself", s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + first, Key: tn.Key}))
		wantLastAdmin(t, "revoke by a non-admin with every permission", s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + first, Key: root}))
		second, secondKey := newKey(t, s, tn.Key, map[string]any{"roles": []string{"admin"}})
		if resp := s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + first, Key: secondKey}); resp.Status != 204 {
			t.Fatalf("revoke one of two admin keys: got %d %s, want 204", resp.Status, resp.Body)
		}
		wantLastAdmin(t, "revoke the second, now last", s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + second, Key: secondKey}))
	})

	t.Run("invitations and expired keys do not count", func(t *testing.T) {
		tn := s.NewTenant("la-inv", "pro")
		addMember(t, s, tn.Key, map[string]any{"email": "future-admin@example.com", "roles": []string{"admin"}})
		expired, _ := newKey(t, s, tn.Key, map[string]any{"roles": []string{"admin"}})
		owner := s.Env.OpenOwnerDB(t)
		if err := owner.WithTenant(context.Background(), uuid.MustParse(tn.ID), func(tx *gorm.DB) error {
			return tx.Exec("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = ?", expired).Error
		}); err != nil {
			t.Fatal(err)
		}
		wantLastAdmin(t, "revoke the only live admin key", s.Do(apptest.Request{Method: "DELETE",
			Path: "/v1/api-keys/" + keyID(t, s, tn.Key, tn.Key), Key: tn.Key}))
	})

	t.Run("admin members", func(t *testing.T) {
		idp := testenv.NewOIDCProvider(t)
		tn := s.NewTenant("la-mem", "pro")
		aud := "la-" + tn.ID
		registerIssuer(t, s, tn.Key, map[string]any{"issuer": idp.Issuer, "audience": aud})
		boss := addMember(t, s, tn.Key, map[string]any{"subject": "boss", "roles": []string{"admin"}})
		bossToken := idp.Token(t, testenv.Claims{Subject: "boss", Audience: []string{aud}})
		// The member is an admin, so the tenant's first key may go.
		if resp := s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + keyID(t, s, bossToken, tn.Key), Key: bossToken}); resp.Status != 204 {
			t.Fatalf("revoke the admin key while an admin member remains: got %d %s, want 204", resp.Status, resp.Body)
		}
		wantLastAdmin(t, "demote the last admin member", s.Do(apptest.Request{Method: "PATCH", Path: "/v1/members/" + boss,
			Key: bossToken, Body: map[string]any{"roles": []string{"viewer"}}}))
		wantLastAdmin(t, "remove the last admin member", s.Do(apptest.Request{Method: "DELETE", Path: "/v1/members/" + boss, Key: bossToken}))
		if resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/members/" + boss, Key: bossToken,
			Body: map[string]any{"roles": []string{"admin", "viewer"}}}); resp.Status != 200 {
			t.Fatalf("a change that keeps admin: got %d %s, want 200", resp.Status, resp.Body)
		}
		// With a new admin key, the member may step down.
		_, key := newKey(t, s, bossToken, map[string]any{"roles": []string{"admin"}})
		if resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/members/" + boss, Key: key,
			Body: map[string]any{"roles": []string{"viewer"}}}); resp.Status != 200 {
			t.Fatalf("demote an admin member while an admin key remains: got %d %s, want 200", resp.Status, resp.Body)
		}
		wantLastAdmin(t, "revoke the new key, now last", s.Do(apptest.Request{Method: "DELETE",
			Path: "/v1/api-keys/" + keyID(t, s, key, key), Key: key}))
	})

	t.Run("members of an issuer no longer registered do not count", func(t *testing.T) {
		idp := testenv.NewOIDCProvider(t)
		tn := s.NewTenant("la-iss", "pro")
		registerIssuer(t, s, tn.Key, map[string]any{"issuer": idp.Issuer, "audience": "old-" + tn.ID})
		addMember(t, s, tn.Key, map[string]any{"subject": "boss", "roles": []string{"admin"}})
		registerIssuer(t, s, tn.Key, map[string]any{"issuer": "https://login.example.com", "audience": "new-" + tn.ID})
		wantLastAdmin(t, "revoke the only admin key", s.Do(apptest.Request{Method: "DELETE",
			Path: "/v1/api-keys/" + keyID(t, s, tn.Key, tn.Key), Key: tn.Key}))
	})

	t.Run("concurrent revocations leave one admin", func(t *testing.T) {
		for round := 0; round < 3; round++ {
			tn := s.NewTenant("la-race", "enterprise")
			root := allPermissions(t, s, tn.Key)
			ids := []string{keyID(t, s, tn.Key, tn.Key)}
			for i := 0; i < 4; i++ {
				id, _ := newKey(t, s, tn.Key, map[string]any{"roles": []string{"admin"}})
				ids = append(ids, id)
			}
			statuses := make([]int, len(ids))
			var wg sync.WaitGroup
			for i, id := range ids {
				wg.Go(func() {
					statuses[i] = s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + id, Key: root}).Status
				})
			}
			wg.Wait()
			revoked, refused := 0, 0
			for _, st := range statuses {
				switch st {
				case 204:
					revoked++
				case 409:
					refused++
				default:
					t.Fatalf("round %d: statuses %v, want only 204 and 409", round, statuses)
				}
			}
			if revoked != len(ids)-1 || refused != 1 {
				t.Fatalf("round %d: %d revoked, %d refused (%v), want %d and 1", round, revoked, refused, statuses, len(ids)-1)
			}
		}
	})
}
