package app_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// escalationRoles are the custom roles of the escalation tests: managers of
// one area each, a broad manager that is not admin, and a lowly role.
var escalationRoles = map[string][]string{
	"catalog":   {"products:read"},
	"keymgr":    {"api_keys:read", "api_keys:write", "products:read"},
	"membermgr": {"members:read", "members:write", "products:read"},
	"rolemgr":   {"roles:read", "roles:write", "products:read"},
	"tenantmgr": {"tenant:read", "tenant:write", "products:read"},
	"manager": {"tenant:read", "tenant:write", "members:read", "members:write", "api_keys:read", "api_keys:write",
		"roles:read", "roles:write", "products:read", "products:write", "orders:read", "orders:write"},
}

// permsOf is what a built-in or escalation role grants.
func permsOf(role string) []string {
	if p, ok := auth.BuiltinRoles[role]; ok {
		return p
	}
	return escalationRoles[role]
}

// holds reports whether actor's role has every permission of the roles.
func holds(actor string, roles ...string) bool {
	for _, r := range roles {
		for _, p := range permsOf(r) {
			if !slices.Contains(permsOf(actor), p) {
				return false
			}
		}
	}
	return true
}

// createRoles defines the escalation roles in the tenant.
func createRoles(t *testing.T, s *apptest.Server, adminKey string) {
	t.Helper()
	for name, perms := range escalationRoles {
		if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: adminKey,
			Body: map[string]any{"name": name, "permissions": perms}}); resp.Status != 201 {
			t.Fatalf("create role %s: got %d %s", name, resp.Status, resp.Body)
		}
	}
}

// newKey creates a key with the roles and returns its id and secret.
func newKey(t *testing.T, s *apptest.Server, key string, body map[string]any) (id, secret string) {
	t.Helper()
	if body["name"] == nil {
		body["name"] = "k"
	}
	resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: key, Body: body})
	if resp.Status != 201 {
		t.Fatalf("create key %v: got %d %s", body, resp.Status, resp.Body)
	}
	m := resp.Map(t)
	return m["id"].(string), m["secret"].(string)
}

// TestEscalationOverEveryRole: every built-in role and the custom roles of
// a tenant try to grant, take away or act on roles, members and keys more
// powerful than themselves, and fail with 403; acting on equal or lower
// ones works wherever the route's permission allows. Expectations come
// from the roles' permission sets: allowed exactly when the actor has the
// route's permission and every permission of every role involved.
func TestEscalationOverEveryRole(t *testing.T) {
	s, tn := apptest.NewWithTenant(t, "esc", "enterprise")
	createRoles(t, s, tn.Key)
	// Sign-in settings are tried in a tenant without members, so that only
	// the settings' own roles count (members' roles are their own test).
	signIn := s.NewTenant("esc-oidc", "enterprise")
	createRoles(t, s, signIn.Key)

	actors := []string{"admin", "clerk", "viewer", "billing", "catalog", "keymgr", "membermgr", "rolemgr", "tenantmgr", "manager"}
	targets := []string{"catalog", "viewer", "clerk", "billing", "manager", "admin"}
	var n atomic.Int64
	unique := func(prefix string) string { return fmt.Sprintf("%s-%d", prefix, n.Add(1)) }

	// expect checks an answer: a 2xx when allowed, else 403 forbidden.
	expect := func(t *testing.T, what string, resp apptest.Response, allowed bool) {
		t.Helper()
		ok := resp.Status >= 200 && resp.Status < 300
		if allowed && !ok || !allowed && (resp.Status != http.StatusForbidden || resp.Code() != "forbidden") {
			t.Errorf("%s: got %d %s, want allowed=%v (403 forbidden when not)", what, resp.Status, resp.Body, allowed)
		}
	}
	// alive reports whether a key still authenticates (any status but 401).
	alive := func(secret string) bool {
		return s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant", Key: secret}).Status != http.StatusUnauthorized
	}

	for _, actor := range actors {
		t.Run(actor, func(t *testing.T) {
			key := tn.Key
			if actor != "admin" {
				_, key = newKey(t, s, tn.Key, map[string]any{"roles": []string{actor}})
			}
			_, signInKey := newKey(t, s, signIn.Key, map[string]any{"roles": []string{actor}})
			has := func(perm string) bool { return slices.Contains(permsOf(actor), perm) }
			for _, target := range append(slices.Clone(targets), actor) {
				do := func(req apptest.Request) apptest.Response {
					req.Key = key
					return s.Do(req)
				}

				// Keys: create one with the role; revoke one that has it.
				expect(t, "create a "+target+" key", do(apptest.Request{Method: "POST", Path: "/v1/api-keys",
					Body: map[string]any{"name": unique("k"), "roles": []string{target}}}),
					has("api_keys:write") && holds(actor, target))
				id, secret := newKey(t, s, tn.Key, map[string]any{"roles": []string{target}})
				allowed := has("api_keys:write") && holds(actor, target)
				expect(t, "revoke a "+target+" key", do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + id}), allowed)
				if !allowed && !alive(secret) {
					t.Errorf("a refused revocation of a %s key revoked it", target)
				}

				// Members: invite with the role; demote, promote, remove.
				expect(t, "invite a "+target, do(apptest.Request{Method: "POST", Path: "/v1/members",
					Body: map[string]any{"email": unique("m") + "@example.com", "roles": []string{target}}}),
					has("members:write") && holds(actor, target))
				member := addMember(t, s, tn.Key, map[string]any{"email": unique("d") + "@example.com", "roles": []string{target}})
				expect(t, "demote a "+target+" to catalog", do(apptest.Request{Method: "PATCH", Path: "/v1/members/" + member,
					Body: map[string]any{"roles": []string{"catalog"}}}),
					has("members:write") && holds(actor, target, "catalog"))
				lowly := addMember(t, s, tn.Key, map[string]any{"email": unique("p") + "@example.com", "roles": []string{"catalog"}})
				expect(t, "promote a catalog member to "+target, do(apptest.Request{Method: "PATCH", Path: "/v1/members/" + lowly,
					Body: map[string]any{"roles": []string{target}}}),
					has("members:write") && holds(actor, target, "catalog"))
				member = addMember(t, s, tn.Key, map[string]any{"email": unique("r") + "@example.com", "roles": []string{target}})
				expect(t, "remove a "+target, do(apptest.Request{Method: "DELETE", Path: "/v1/members/" + member}),
					has("members:write") && holds(actor, target))

				// Roles: create one with the target's permissions; take
				// them away from one; delete one that has them.
				expect(t, "create a role with "+target+"'s permissions", do(apptest.Request{Method: "POST", Path: "/v1/roles",
					Body: map[string]any{"name": unique("new"), "permissions": permsOf(target)}}),
					has("roles:write") && holds(actor, target))
				role := unique("edit")
				if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: tn.Key,
					Body: map[string]any{"name": role, "permissions": permsOf(target)}}); resp.Status != 201 {
					t.Fatalf("create role: got %d %s", resp.Status, resp.Body)
				}
				expect(t, "cut a role with "+target+"'s permissions down to products:read", do(apptest.Request{Method: "PATCH", Path: "/v1/roles/" + role,
					Body: map[string]any{"permissions": []string{"products:read"}}}),
					has("roles:write") && holds(actor, target, "catalog"))
				role = unique("del")
				if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: tn.Key,
					Body: map[string]any{"name": role, "permissions": permsOf(target)}}); resp.Status != 201 {
					t.Fatalf("create role: got %d %s", resp.Status, resp.Body)
				}
				expect(t, "delete a role with "+target+"'s permissions", do(apptest.Request{Method: "DELETE", Path: "/v1/roles/" + role}),
					has("roles:write") && holds(actor, target))

				// Sign-in settings that hand out the role to anyone of a
				// domain.
				reset := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: signIn.Key, Body: map[string]any{"settings": map[string]any{"oidc": nil}}})
				if reset.Status != 200 {
					t.Fatalf("reset sign-in: got %d %s", reset.Status, reset.Body)
				}
				expect(t, "JIT sign-up as "+target, s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: signInKey,
					Body: map[string]any{"settings": map[string]any{"oidc": map[string]any{
						"issuer": "https://idp.example.com", "audience": "esc-" + signIn.ID,
						"jit_email_domains": []string{"corp.example"}, "jit_default_role": target}}}}),
					has("tenant:write") && holds(actor, target))
			}

			// A roles claim can name any role: only every permission will do.
			s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: signIn.Key, Body: map[string]any{"settings": map[string]any{"oidc": nil}}})
			expect(t, "set a roles claim", s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: signInKey,
				Body: map[string]any{"settings": map[string]any{"oidc": map[string]any{
					"issuer": "https://idp.example.com", "audience": "esc-" + signIn.ID, "roles_claim": "groups"}}}}),
				has("tenant:write") && holds(actor, "admin"))
		})
	}
}

// TestSignInSettingsNeedThePermissionsTheyGrant: a role holding only
// tenant:read and tenant:write cannot make itself admin through the
// tenant's sign-in settings (JIT domain and role, roles claim, a new issuer
// or audience that would sign in as the tenant's admin members), and the
// ID token it hoped to use stays out; changes that hand out nothing still
// work.
func TestSignInSettingsNeedThePermissionsTheyGrant(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	idp := testenv.NewOIDCProvider(t)
	evil := testenv.NewOIDCProvider(t)
	tn := s.NewTenant("h1", "pro")
	aud := "h1-" + tn.ID
	registerIssuer(t, s, tn.Key, map[string]any{"issuer": idp.Issuer, "audience": aud})
	addMember(t, s, tn.Key, map[string]any{"subject": "boss", "roles": []string{"admin"}})
	if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: tn.Key,
		Body: map[string]any{"name": "settings", "permissions": []string{"tenant:read", "tenant:write"}}}); resp.Status != 201 {
		t.Fatalf("create role: got %d %s", resp.Status, resp.Body)
	}
	_, key := newKey(t, s, tn.Key, map[string]any{"roles": []string{"settings"}})
	patch := func(body map[string]any) apptest.Response {
		return s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: key, Body: body})
	}
	oidc := func(extra map[string]any) map[string]any {
		o := map[string]any{"issuer": idp.Issuer, "audience": aud}
		for k, v := range extra {
			o[k] = v
		}
		return map[string]any{"settings": map[string]any{"oidc": o}}
	}

	for _, tc := range []struct {
		name    string
		body    map[string]any
		missing string // a permission the refusal must name
	}{
		{"JIT domain with the admin role", oidc(map[string]any{"jit_email_domains": []string{"evil.example"}, "jit_default_role": "admin"}), "members:write"},
		{"JIT domain with the viewer role", oidc(map[string]any{"jit_email_domains": []string{"evil.example"}, "jit_default_role": "viewer"}), "products:read"},
		{"roles claim", oidc(map[string]any{"roles_claim": "groups"}), "audit:read"},
		{"swap the issuer", map[string]any{"settings": map[string]any{"oidc": map[string]any{"issuer": evil.Issuer, "audience": aud}}}, "api_keys:write"},
		{"swap the audience", oidc(map[string]any{"audience": "someone-elses-client"}), "roles:write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := patch(tc.body)
			if resp.Status != 403 || resp.Code() != "forbidden" || !strings.Contains(string(resp.Body), tc.missing) {
				t.Fatalf("got %d %s, want 403 forbidden naming %s", resp.Status, resp.Body, tc.missing)
			}
		})
	}
	t.Run("unknown JIT role is 422", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: tn.Key,
			Body: oidc(map[string]any{"jit_email_domains": []string{"corp.example"}, "jit_default_role": "ghost"})})
		if resp.Status != 422 || !strings.Contains(string(resp.Body), "settings.oidc.jit_default_role") {
			t.Fatalf("got %d %s, want 422 naming settings.oidc.jit_default_role", resp.Status, resp.Body)
		}
	})
	t.Run("the attacker's token stays out", func(t *testing.T) {
		for _, tok := range []string{
			idp.Token(t, testenv.Claims{Subject: "mallory", Audience: []string{aud}, Email: "mallory@evil.example", EmailVerified: boolPtr(true)}),
			idp.Token(t, testenv.Claims{Subject: "mallory", Audience: []string{aud}, Extra: map[string]any{"groups": []string{"admin"}}}),
			evil.Token(t, testenv.Claims{Subject: "boss", Audience: []string{aud}}),
		} {
			if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/members", Key: tok}); resp.Status == 200 {
				t.Fatalf("got %d %s, want the token refused", resp.Status, resp.Body)
			}
		}
	})
	t.Run("changes that hand out nothing", func(t *testing.T) {
		if resp := patch(map[string]any{"name": "Renamed"}); resp.Status != 200 {
			t.Fatalf("rename: got %d %s", resp.Status, resp.Body)
		}
		body := oidc(nil)
		body["settings"].(map[string]any)["cors_origins"] = []string{"https://app.example.com"}
		if resp := patch(body); resp.Status != 200 {
			t.Fatalf("CORS origins with the same sign-in: got %d %s", resp.Status, resp.Body)
		}
	})
	t.Run("admin may", func(t *testing.T) {
		registerIssuer(t, s, tn.Key, map[string]any{"issuer": idp.Issuer, "audience": aud,
			"jit_email_domains": []string{"corp.example"}, "jit_default_role": "viewer", "roles_claim": "groups"})
	})
}

// TestActingOnHigherMembersAndKeys: members:write alone cannot demote or
// remove an admin member, and api_keys:write alone cannot revoke an admin
// key; both work on lower ones.
func TestActingOnHigherMembersAndKeys(t *testing.T) {
	s, tn := apptest.NewWithTenant(t, "m1", "pro")
	createRoles(t, s, tn.Key)
	_, members := newKey(t, s, tn.Key, map[string]any{"roles": []string{"membermgr"}})
	_, keys := newKey(t, s, tn.Key, map[string]any{"roles": []string{"keymgr"}})
	boss := addMember(t, s, tn.Key, map[string]any{"email": "boss@example.com", "roles": []string{"admin"}})
	lowly := addMember(t, s, tn.Key, map[string]any{"email": "lowly@example.com", "roles": []string{"catalog"}})
	adminKey, adminSecret := newKey(t, s, tn.Key, map[string]any{"roles": []string{"admin"}})
	lowKey, _ := newKey(t, s, tn.Key, map[string]any{"roles": []string{"catalog"}})

	for _, tc := range []struct {
		name string
		req  apptest.Request
		want int
	}{
		{"demote the admin", apptest.Request{Method: "PATCH", Path: "/v1/members/" + boss, Key: members, Body: map[string]any{"roles": []string{"catalog"}}}, 403},
		{"remove the admin", apptest.Request{Method: "DELETE", Path: "/v1/members/" + boss, Key: members}, 403},
		{"revoke the admin's key", apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + adminKey, Key: keys}, 403},
		{"change a lower member", apptest.Request{Method: "PATCH", Path: "/v1/members/" + lowly, Key: members, Body: map[string]any{"roles": []string{"catalog"}}}, 200},
		{"remove a lower member", apptest.Request{Method: "DELETE", Path: "/v1/members/" + lowly, Key: members}, 204},
		{"revoke a lower key", apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + lowKey, Key: keys}, 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.Do(tc.req)
			if resp.Status != tc.want {
				t.Fatalf("got %d %s, want %d", resp.Status, resp.Body, tc.want)
			}
			if tc.want == 403 && (resp.Code() != "forbidden" || !strings.Contains(string(resp.Body), "you lack")) {
				t.Fatalf("got %s, want forbidden naming what is lacking", resp.Body)
			}
		})
	}
	if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/members", Key: adminSecret}); resp.Status != 200 || !strings.Contains(string(resp.Body), `"roles":["admin"]`) {
		t.Fatalf("after the refusals the admin key and member should be intact: got %d %s", resp.Status, resp.Body)
	}
}
