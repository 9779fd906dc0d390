package app_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/internal/apptest"
)

// TestTenantSettingsMergePatch: PATCH /v1/tenant merges settings as a JSON
// Merge Patch (RFC 7396). Keys left out are kept (setting cors_origins no
// longer removes single sign-on), null removes a key, nested objects merge,
// arrays replace, and settings: null removes every setting.
func TestTenantSettingsMergePatch(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "merge", "pro")
	settingsAfter := func(t *testing.T, body string) map[string]any {
		t.Helper()
		resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: a.Key, Body: body})
		if resp.Status != 200 {
			t.Fatalf("PATCH %s: got %d %s, want 200", body, resp.Status, resp.Body)
		}
		got, _ := resp.Map(t)["settings"].(map[string]any)
		return got
	}
	oidc := map[string]any{"issuer": "https://login.merge.example", "audience": "merge-app",
		"jit_email_domains": []any{"merge.example"}, "jit_default_role": "viewer"}

	steps := []struct {
		name, patch string
		want        map[string]any
	}{
		{"set sign-in and origins",
			`{"settings":{"oidc":{"issuer":"https://login.merge.example","audience":"merge-app","jit_email_domains":["merge.example"],"jit_default_role":"viewer"},"cors_origins":["https://a.example"]}}`,
			map[string]any{"oidc": oidc, "cors_origins": []any{"https://a.example"}}},
		{"origins alone keep sign-in", `{"settings":{"cors_origins":["https://b.example","https://c.example"]}}`,
			map[string]any{"oidc": oidc, "cors_origins": []any{"https://b.example", "https://c.example"}}},
		{"the name alone keeps everything", `{"name":"Merged"}`,
			map[string]any{"oidc": oidc, "cors_origins": []any{"https://b.example", "https://c.example"}}},
		{"an empty patch keeps everything", `{"settings":{}}`,
			map[string]any{"oidc": oidc, "cors_origins": []any{"https://b.example", "https://c.example"}}},
		{"null removes a nested key, the rest of oidc stays", `{"settings":{"oidc":{"jit_email_domains":null,"jit_default_role":null}}}`,
			map[string]any{"oidc": map[string]any{"issuer": "https://login.merge.example", "audience": "merge-app"},
				"cors_origins": []any{"https://b.example", "https://c.example"}}},
		{"null removes sign-in", `{"settings":{"oidc":null}}`,
			map[string]any{"cors_origins": []any{"https://b.example", "https://c.example"}}},
		{"settings null removes every setting", `{"settings":null}`, map[string]any{}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got := settingsAfter(t, st.patch)
			if !reflect.DeepEqual(got, st.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(st.want)
				t.Fatalf("settings: got %s, want %s", g, w)
			}
		})
	}

	refused := []struct {
		name, patch, field string
	}{
		{"an unknown key", `{"settings":{"colour":"red"}}`, "settings.colour"},
		{"an unknown nested key", `{"settings":{"oidc":{"issuer":"https://login.merge.example","audience":"x","colour":"red"}}}`, "settings.colour"},
		{"not an object", `{"settings":5}`, "settings"},
		{"a merged result that is invalid", `{"settings":{"oidc":{"audience":"only"}}}`, "settings.oidc.issuer"},
	}
	for _, tc := range refused {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: a.Key, Body: tc.patch})
			if resp.Status != 422 || resp.Code() != "validation_failed" {
				t.Fatalf("got %d %s, want 422 validation_failed", resp.Status, resp.Body)
			}
			if !strings.Contains(string(resp.Body), `"field":"`+tc.field+`"`) {
				t.Fatalf("got %s, want a field error on %s", resp.Body, tc.field)
			}
		})
	}
}
