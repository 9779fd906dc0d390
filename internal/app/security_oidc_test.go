package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestIssuerAndAudienceBelongToOneTenant: a tenant cannot register the
// (issuer, audience) another tenant registered (409), so it cannot make the
// other tenant's members name their tenant to sign in; the database
// refuses it too.
func TestIssuerAndAudienceBelongToOneTenant(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "m4-a", "pro")
	idp := testenv.NewOIDCProvider(t)
	b := s.NewTenant("m4-b", "pro")
	aud := "m4-" + a.ID
	registerIssuer(t, s, a.Key, map[string]any{"issuer": idp.Issuer, "audience": aud})
	addMember(t, s, a.Key, map[string]any{"subject": "alice", "roles": []string{"viewer"}})

	resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: b.Key,
		Body: map[string]any{"settings": map[string]any{"oidc": map[string]any{"issuer": idp.Issuer, "audience": aud}}}})
	if resp.Status != http.StatusConflict || resp.Code() != "conflict" {
		t.Fatalf("B registers A's issuer and audience: got %d %s, want 409 conflict", resp.Status, resp.Body)
	}
	if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant", Key: b.Key}); string(resp.Body) == "" || resp.Map(t)["settings"].(map[string]any)["oidc"] != nil {
		t.Fatalf("B's settings changed: %s", resp.Body)
	}
	// Alice signs in without naming her tenant.
	tok := idp.Token(t, testenv.Claims{Subject: "alice", Audience: []string{aud}})
	if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant", Key: tok}); resp.Status != 200 || resp.Map(t)["id"] != a.ID {
		t.Fatalf("A's member: got %d %s, want A", resp.Status, resp.Body)
	}
	// The same issuer with B's own audience is fine, and A may save its
	// own registration again.
	registerIssuer(t, s, b.Key, map[string]any{"issuer": idp.Issuer, "audience": "m4-" + b.ID})
	registerIssuer(t, s, a.Key, map[string]any{"issuer": idp.Issuer, "audience": aud, "roles_claim": "groups"})

	t.Run("the database refuses it too", func(t *testing.T) {
		settings, err := json.Marshal(map[string]any{"oidc": map[string]any{"issuer": idp.Issuer, "audience": aud}})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Env.OpenDB(t, 1).WithTenant(context.Background(), uuid.MustParse(b.ID), func(tx *gorm.DB) error {
			return tx.Exec("UPDATE tenants SET settings = ?::jsonb WHERE id = ?", string(settings), b.ID).Error
		})
		if !db.IsUniqueViolation(err, "tenants_oidc_issuer_audience_key") {
			t.Fatalf("got %v, want a unique violation of tenants_oidc_issuer_audience_key", err)
		}
	})
}

// TestIssuerSSRFGuard: issuers on every special-purpose range, written as
// IPv4, IPv4-mapped or NAT64 IPv6, or as numeric shorthand, are refused at
// registration (422); an issuer whose address is internal but got past
// registration is refused at dial time, so discovery never reaches it.
func TestIssuerSSRFGuard(t *testing.T) {
	s := apptest.New(t, apptest.Options{Config: func(c *config.Config) { c.OIDCAllowInsecureIssuers = false }})
	tn := s.NewTenant("ssrf2", "pro")
	for _, issuer := range []string{
		"https://100.100.100.200", "https://100.64.0.1/realm", "https://198.18.0.1", "https://198.19.255.255",
		"https://192.0.0.170", "https://192.0.0.8", "https://240.0.0.1", "https://255.255.255.255", "https://0.0.0.0",
		"https://0.1.2.3", "https://224.0.0.1", "https://192.0.2.1", "https://203.0.113.7",
		"https://[::ffff:127.0.0.1]", "https://[::ffff:a9fe:a9fe]", "https://[::ffff:10.0.0.1]/realm",
		"https://[64:ff9b::a9fe:a9fe]", "https://[64:ff9b::10.0.0.1]", "https://[64:ff9b:1::1]",
		"https://[fd00::1]", "https://[fe80::1%25eth0]", "https://[2002:a00:1::]", "https://[2001:db8::1]",
		"https://127.1", "https://2130706433", "https://0x7f000001", "https://localhost.",
	} {
		resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: tn.Key,
			Body: map[string]any{"settings": map[string]any{"oidc": map[string]any{"issuer": issuer, "audience": "x"}}}})
		if resp.Status != 422 {
			t.Errorf("issuer %q: got %d %s, want 422", issuer, resp.Status, resp.Body)
		}
	}
	for _, issuer := range []string{"https://login.example.com/realm", "https://8.8.8.8", "https://[2606:4700:4700::1111]", "https://[64:ff9b::808:808]"} {
		// The audience is the tenant's own: (issuer, audience) pairs are
		// unique across the package's tenants.
		resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: tn.Key,
			Body: map[string]any{"settings": map[string]any{"oidc": map[string]any{"issuer": issuer, "audience": "ssrf-" + tn.ID}}}})
		if resp.Status != 200 {
			t.Errorf("public issuer %q: got %d %s, want 200", issuer, resp.Status, resp.Body)
		}
	}

	t.Run("dial time", func(t *testing.T) {
		// The test provider listens on 127.0.0.1. Register it behind the
		// API's back, as a DNS name that now resolves there would be.
		idp := testenv.NewOIDCProvider(t)
		other := s.NewTenant("ssrf-dial", "pro")
		settings, err := json.Marshal(map[string]any{"oidc": map[string]any{"issuer": idp.Issuer, "audience": "dial"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Env.OpenDB(t, 1).WithTenant(context.Background(), uuid.MustParse(other.ID), func(tx *gorm.DB) error {
			return tx.Exec("UPDATE tenants SET settings = ?::jsonb WHERE id = ?", string(settings), other.ID).Error
		}); err != nil {
			t.Fatal(err)
		}
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: idp.Token(t, testenv.Claims{Subject: "u", Audience: []string{"dial"}})})
		if resp.Status != http.StatusServiceUnavailable || resp.Code() != "identity_provider_unavailable" {
			t.Fatalf("got %d %s, want 503 identity_provider_unavailable", resp.Status, resp.Body)
		}
		if n := idp.Requests("/.well-known/openid-configuration"); n != 0 {
			t.Fatalf("the provider on loopback got %d discovery requests, want 0", n)
		}
	})
}
