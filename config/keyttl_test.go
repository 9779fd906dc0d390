package config

import (
	"strings"
	"testing"
	"time"
)

// TestAPIKeyMaxTTL: one year by default; any duration of at least a
// minute; anything else names the variable.
func TestAPIKeyMaxTTL(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  time.Duration
		bad   bool
	}{
		{"", 365 * 24 * time.Hour, false},
		{"720h", 720 * time.Hour, false},
		{"1m", time.Minute, false},
		{"59s", 0, true},
		{"0", 0, true},
		{"-1h", 0, true},
		{"a year", 0, true},
	} {
		t.Run(tc.value, func(t *testing.T) {
			c, err := Load(func(name string) string {
				if name == "API_KEY_MAX_TTL" {
					return tc.value
				}
				return ""
			})
			if tc.bad {
				if err == nil || !strings.Contains(err.Error(), "API_KEY_MAX_TTL") {
					t.Fatalf("got %v, want an error naming API_KEY_MAX_TTL", err)
				}
				return
			}
			if err != nil || c.APIKeyMaxTTL != tc.want {
				t.Fatalf("got %v, %v; want %v", c.APIKeyMaxTTL, err, tc.want)
			}
		})
	}
}

// TestVarsListAPIKeyMaxTTL keeps --help and the README table in step.
func TestVarsListAPIKeyMaxTTL(t *testing.T) {
	for _, v := range Vars {
		if v.Name == "API_KEY_MAX_TTL" {
			if v.Default != "8760h" {
				t.Fatalf("Vars: API_KEY_MAX_TTL defaults to %q, want 8760h", v.Default)
			}
			return
		}
	}
	t.Fatal("Vars: API_KEY_MAX_TTL missing")
}
