package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

func boolPtr(b bool) *bool { return &b }

// registerIssuer makes the tenant accept tokens of the provider for audience.
func registerIssuer(t *testing.T, s *apptest.Server, adminKey string, oidc map[string]any) {
	t.Helper()
	resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: adminKey,
		Body: map[string]any{"settings": map[string]any{"oidc": oidc}}})
	if resp.Status != 200 {
		t.Fatalf("register issuer: got %d %s, want 200", resp.Status, resp.Body)
	}
}

func addMember(t *testing.T, s *apptest.Server, adminKey string, body map[string]any) string {
	t.Helper()
	resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/members", Key: adminKey, Body: body})
	if resp.Status != 201 {
		t.Fatalf("add member %v: got %d %s, want 201", body, resp.Status, resp.Body)
	}
	return resp.Map(t)["id"].(string)
}

// TestOIDCSignIn: tokens of a tenant's registered provider sign its members
// in; every kind of bad token is refused with the right status and code.
func TestOIDCSignIn(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "oidc-a", "pro")
	idp := testenv.NewOIDCProvider(t)
	b := s.NewTenant("oidc-b", "pro")
	registerIssuer(t, s, a.Key, map[string]any{"issuer": idp.Issuer, "audience": "tenantd-a"})
	addMember(t, s, a.Key, map[string]any{"subject": "alice", "roles": []string{"clerk"}})

	alice := testenv.Claims{Subject: "alice", Audience: []string{"tenantd-a"}}
	with := func(edit func(*testenv.Claims)) testenv.Claims {
		c := alice
		edit(&c)
		return c
	}
	cases := []struct {
		name       string
		token      string
		path       string
		header     map[string]string
		wantStatus int
		wantCode   string
	}{
		{"valid RS256 ID token", idp.Token(t, alice), "/v1/products", nil, 200, ""},
		{"valid ES256 ID token", idp.Token(t, with(func(c *testenv.Claims) { c.Alg = "ES256" })), "/v1/products", nil, 200, ""},
		{"valid access token", idp.Token(t, with(func(c *testenv.Claims) { c.Type = "at+jwt" })), "/v1/products", nil, 200, ""},
		{"expired", idp.Token(t, with(func(c *testenv.Claims) { c.ExpiresIn = -2 * time.Minute })), "/v1/products", nil, 401, "unauthenticated"},
		{"not yet valid", idp.Token(t, with(func(c *testenv.Claims) { c.NotBefore = time.Now().Add(10 * time.Minute) })), "/v1/products", nil, 401, "unauthenticated"},
		{"issued in the future", idp.Token(t, with(func(c *testenv.Claims) { c.IssuedAt = time.Now().Add(10 * time.Minute) })), "/v1/products", nil, 401, "unauthenticated"},
		{"wrong audience", idp.Token(t, with(func(c *testenv.Claims) { c.Audience = []string{"someone-else"} })), "/v1/products", nil, 401, "unauthenticated"},
		{"unregistered issuer", idp.Token(t, with(func(c *testenv.Claims) { c.Issuer = "https://evil.example" })), "/v1/products", nil, 401, "unauthenticated"},
		{"unknown kid", idp.Token(t, with(func(c *testenv.Claims) { c.KeyID = "no-such-key" })), "/v1/products", nil, 401, "unauthenticated"},
		{"alg none", idp.Token(t, with(func(c *testenv.Claims) { c.Alg = "none" })), "/v1/products", nil, 401, "unauthenticated"},
		{"HS256 keyed with the public key", idp.Token(t, with(func(c *testenv.Claims) { c.Alg = "HS256-public-key" })), "/v1/products", nil, 401, "unauthenticated"},
		{"tampered payload", idp.Tamper(idp.Token(t, alice)), "/v1/products", nil, 401, "unauthenticated"},
		{"logout token type", idp.Token(t, with(func(c *testenv.Claims) { c.Type = "logout+jwt" })), "/v1/products", nil, 401, "unauthenticated"},
		{"unverified email, no member", idp.Token(t, with(func(c *testenv.Claims) {
			c.Subject, c.Email, c.EmailVerified = "mallory", "mallory@example.com", boolPtr(false)
		})), "/v1/products", nil, 403, "forbidden"},
		{"signed in but no member", idp.Token(t, with(func(c *testenv.Claims) { c.Subject = "stranger" })), "/v1/products", nil, 403, "forbidden"},
		{"token for A naming B", idp.Token(t, alice), "/v1/products", map[string]string{"X-Tenant": b.Slug}, 403, "tenant_mismatch"},
		{"clerk lacks members:write", idp.Token(t, alice), "/v1/members", nil, 403, "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			var body any
			if tc.path == "/v1/members" {
				method, body = "POST", map[string]any{"subject": "x", "roles": []string{"viewer"}}
			}
			resp := s.Do(apptest.Request{Method: method, Path: tc.path, Key: tc.token, Header: tc.header, Body: body})
			if resp.Status != tc.wantStatus || resp.Code() != tc.wantCode {
				t.Fatalf("got %d %q %s, want %d %q", resp.Status, resp.Code(), resp.Body, tc.wantStatus, tc.wantCode)
			}
		})
	}
	if n := idp.Requests("/.well-known/openid-configuration"); n != 1 {
		t.Errorf("discovery fetched %d times, want once (cached, and never for an unregistered issuer)", n)
	}

	t.Run("key rotation: an unknown kid triggers one refetch", func(t *testing.T) {
		before := idp.Requests("/jwks")
		idp.RotateKeys(t)
		tok := idp.Token(t, alice)
		for i := 0; i < 3; i++ {
			if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tok}); resp.Status != 200 {
				t.Fatalf("rotated key: got %d %s, want 200", resp.Status, resp.Body)
			}
		}
		if got := idp.Requests("/jwks") - before; got != 1 {
			t.Fatalf("jwks fetched %d times after rotation, want 1", got)
		}
	})

	t.Run("made-up key ids cannot make the server hammer the provider", func(t *testing.T) {
		before := idp.Requests("/jwks")
		for i := 0; i < 20; i++ {
			tok := idp.Token(t, with(func(c *testenv.Claims) { c.KeyID = "bogus-" + time.Now().String() }))
			if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tok}); resp.Status != 401 {
				t.Fatalf("bogus kid: got %d, want 401", resp.Status)
			}
		}
		if got := idp.Requests("/jwks") - before; got > 2 {
			t.Fatalf("jwks fetched %d times for 20 bogus kids, want at most 2", got)
		}
	})

	t.Run("invitation claimed by verified email", func(t *testing.T) {
		addMember(t, s, a.Key, map[string]any{"email": "Bob@Example.com", "roles": []string{"viewer"}})
		bob := with(func(c *testenv.Claims) { c.Subject, c.Email = "bob", "bob@example.com" })
		bob.EmailVerified = boolPtr(false)
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: idp.Token(t, bob)}); resp.Status != 403 {
			t.Fatalf("unverified email: got %d, want 403", resp.Status)
		}
		bob.EmailVerified = boolPtr(true)
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: idp.Token(t, bob)}); resp.Status != 200 {
			t.Fatalf("verified email: got %d %s, want 200", resp.Status, resp.Body)
		}
		// Bound now: the same subject works without the email claim.
		bob.Email, bob.EmailVerified = "", nil
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: idp.Token(t, bob)}); resp.Status != 200 {
			t.Fatalf("bound member: got %d, want 200", resp.Status)
		}
		// A viewer cannot write.
		if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/products", Key: idp.Token(t, bob),
			Body: map[string]any{"sku": "B-1", "name": "B", "price": 1, "currency": "EUR", "stock": 1}}); resp.Status != 403 {
			t.Fatalf("viewer writes: got %d, want 403", resp.Status)
		}
	})

	t.Run("access token without email: userinfo supplies it", func(t *testing.T) {
		addMember(t, s, a.Key, map[string]any{"email": "carol@example.com", "roles": []string{"viewer"}})
		tok := idp.Token(t, with(func(c *testenv.Claims) { c.Subject, c.Type = "carol", "at+jwt" }))
		idp.SetUserInfo(tok, map[string]any{"sub": "carol", "email": "carol@example.com", "email_verified": true})
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tok}); resp.Status != 200 {
			t.Fatalf("got %d %s, want 200", resp.Status, resp.Body)
		}
	})

	t.Run("removing a member applies to the next request", func(t *testing.T) {
		id := addMember(t, s, a.Key, map[string]any{"subject": "dave", "roles": []string{"viewer"}})
		tok := idp.Token(t, with(func(c *testenv.Claims) { c.Subject = "dave" }))
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tok}); resp.Status != 200 {
			t.Fatalf("member: got %d, want 200", resp.Status)
		}
		if resp := s.Do(apptest.Request{Method: "DELETE", Path: "/v1/members/" + id, Key: a.Key}); resp.Status != 204 {
			t.Fatalf("remove: got %d %s, want 204", resp.Status, resp.Body)
		}
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tok}); resp.Status != 403 {
			t.Fatalf("removed member: got %d, want 403", resp.Status)
		}
	})

	t.Run("roles claim is unioned, unknown names count for nothing", func(t *testing.T) {
		registerIssuer(t, s, a.Key, map[string]any{"issuer": idp.Issuer, "audience": "tenantd-a", "roles_claim": "groups"})
		addMember(t, s, a.Key, map[string]any{"subject": "erin", "roles": []string{"viewer"}})
		post := func(groups []string) int {
			tok := idp.Token(t, with(func(c *testenv.Claims) { c.Subject, c.Extra = "erin", map[string]any{"groups": groups} }))
			return s.Do(apptest.Request{Method: "POST", Path: "/v1/products", Key: tok,
				Body: map[string]any{"sku": "E-" + time.Now().Format("150405.000000"), "name": "E", "price": 1, "currency": "EUR", "stock": 1}}).Status
		}
		if got := post([]string{"superuser", "root"}); got != 403 {
			t.Fatalf("unknown roles in the claim: got %d, want 403", got)
		}
		if got := post([]string{"admin"}); got != 201 {
			t.Fatalf("admin in the claim: got %d, want 201", got)
		}
	})

	t.Run("JIT sign-up for listed email domains", func(t *testing.T) {
		registerIssuer(t, s, a.Key, map[string]any{"issuer": idp.Issuer, "audience": "tenantd-a",
			"jit_email_domains": []string{"corp.example"}, "jit_default_role": "viewer"})
		tok := func(sub, email string) string {
			return idp.Token(t, with(func(c *testenv.Claims) { c.Subject, c.Email, c.EmailVerified = sub, email, boolPtr(true) }))
		}
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tok("frank", "frank@corp.example")}); resp.Status != 200 {
			t.Fatalf("JIT domain: got %d %s, want 200", resp.Status, resp.Body)
		}
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tok("gina", "gina@other.example")}); resp.Status != 403 {
			t.Fatalf("other domain: got %d, want 403", resp.Status)
		}
	})

	t.Run("two tenants, one issuer: the audience picks the tenant", func(t *testing.T) {
		c := s.NewTenant("oidc-c", "pro")
		registerIssuer(t, s, c.Key, map[string]any{"issuer": idp.Issuer, "audience": "tenantd-c"})
		addMember(t, s, c.Key, map[string]any{"subject": "alice", "roles": []string{"admin"}})
		tok := idp.Token(t, with(func(cl *testenv.Claims) { cl.Audience = []string{"tenantd-c"} }))
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant", Key: tok})
		if resp.Status != 200 || resp.Map(t)["id"] != c.ID {
			t.Fatalf("got %d %s, want tenant %s", resp.Status, resp.Body, c.ID)
		}
		// Alice of C is admin there, but her token for A still only has clerk in A.
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/members", Key: idp.Token(t, alice)}); resp.Status != 403 {
			t.Fatalf("alice in A: got %d, want 403", resp.Status)
		}
	})
}

// TestOIDCRegistration: issuers must be https on public addresses unless
// insecure issuers are allowed; an unreachable provider is a clear 503.
func TestOIDCRegistration(t *testing.T) {
	t.Run("SSRF guard", func(t *testing.T) {
		s := apptest.New(t, apptest.Options{Config: func(c *config.Config) { c.OIDCAllowInsecureIssuers = false }})
		a := s.NewTenant("ssrf", "pro")
		for _, issuer := range []string{"http://idp.example.com", "https://127.0.0.1/realm", "https://10.0.0.8", "https://169.254.169.254/latest",
			"https://localhost:8443", "https://[::1]/", "ftp://idp.example.com", "https://user:pw@idp.example.com", "not a url"} {
			resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: a.Key,
				Body: map[string]any{"settings": map[string]any{"oidc": map[string]any{"issuer": issuer, "audience": "x"}}}})
			if resp.Status != 422 {
				t.Fatalf("issuer %q: got %d %s, want 422", issuer, resp.Status, resp.Body)
			}
		}
		// An audience of this run's own: an issuer and audience are one
		// tenant's, and the package's database keeps earlier runs' tenants
		// (go test -count).
		resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: a.Key,
			Body: map[string]any{"settings": map[string]any{"oidc": map[string]any{"issuer": "https://login.example.com/realm", "audience": "ssrf-" + testenv.RandomHex(4)}}}})
		if resp.Status != 200 {
			t.Fatalf("public https issuer: got %d %s, want 200", resp.Status, resp.Body)
		}
	})
	t.Run("provider down", func(t *testing.T) {
		s, a := apptest.NewWithTenant(t, "down", "pro")
		idp := testenv.NewOIDCProvider(t)
		registerIssuer(t, s, a.Key, map[string]any{"issuer": idp.Issuer, "audience": "aud"})
		idp.SetDown(true)
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: idp.Token(t, testenv.Claims{Subject: "u", Audience: []string{"aud"}})})
		if resp.Status != http.StatusServiceUnavailable || resp.Code() != "identity_provider_unavailable" {
			t.Fatalf("got %d %q, want 503 identity_provider_unavailable", resp.Status, resp.Code())
		}
	})
	t.Run("slow provider: no hang", func(t *testing.T) {
		s, a := apptest.NewWithTenant(t, "slow", "pro")
		idp := testenv.NewOIDCProvider(t)
		registerIssuer(t, s, a.Key, map[string]any{"issuer": idp.Issuer, "audience": "aud"})
		idp.SetDelay(20 * time.Second)
		start := time.Now()
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: idp.Token(t, testenv.Claims{Subject: "u", Audience: []string{"aud"}})})
		if resp.Status != http.StatusServiceUnavailable || time.Since(start) > 15*time.Second {
			t.Fatalf("got %d after %v, want 503 within the provider timeout", resp.Status, time.Since(start))
		}
	})
}

// TestOperatorTokens: /admin/v1 accepts a platform-issuer token carrying
// the operator role, and nothing else of that issuer.
func TestOperatorTokens(t *testing.T) {
	idp := testenv.NewOIDCProvider(t)
	s := apptest.New(t, apptest.Options{Config: func(c *config.Config) {
		c.PlatformOIDCIssuer, c.PlatformOIDCAudience = idp.Issuer, "tenantd-platform"
	}})
	op := func(roles []string) int {
		tok := idp.Token(t, testenv.Claims{Subject: "ops-1", Audience: []string{"tenantd-platform"}, Extra: map[string]any{"roles": roles}})
		return s.Do(apptest.Request{Method: "GET", Path: "/admin/v1/tenants", Key: tok}).Status
	}
	if got := op([]string{"platform-admin"}); got != 200 {
		t.Fatalf("operator role: got %d, want 200", got)
	}
	if got := op([]string{"support"}); got != 403 {
		t.Fatalf("without the operator role: got %d, want 403", got)
	}
	// An operator token is no tenant credential: its issuer is registered by
	// no tenant.
	tok := idp.Token(t, testenv.Claims{Subject: "ops-1", Audience: []string{"tenantd-platform"}, Extra: map[string]any{"roles": []string{"platform-admin"}}})
	if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tok}); resp.Status != 401 {
		t.Fatalf("operator token on /v1: got %d, want 401", resp.Status)
	}
}
