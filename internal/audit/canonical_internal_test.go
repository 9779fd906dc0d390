package audit

import (
	"testing"

	"github.com/tenantd/tenantd/internal/testenv"
)

// TestCanonicalNumber proves every spelling of a number has one canonical
// form, and absurd exponents are refused.
func TestCanonicalNumber(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"0", "0"}, {"-0", "0"}, {"0.000", "0"}, {"0e10", "0"},
		{"7", "7"}, {"-7", "-7"}, {"1.50", "1.5"}, {"150", "150"},
		{"1e3", "1000"}, {"1E+3", "1000"}, {"10e-1", "1"}, {"1.5e-3", "0.0015"},
		{"-12.340e1", "-123.4"}, {"123e-2", "1.23"}, {"0.1", "0.1"},
		{"9007199254740993", "9007199254740993"}, {"1e21", "1000000000000000000000"},
	}
	for _, tt := range tests {
		got, err := canonicalNumber(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("canonicalNumber(%q): got %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"1e401", "1e-401", "x", "1.2.3", "--1", "1e"} {
		if got, err := canonicalNumber(bad); err == nil {
			t.Errorf("canonicalNumber(%q): got %q, want an error", bad, got)
		}
	}
}

// TestCanonicalThroughJSONB proves that what PostgreSQL's jsonb gives back
// for a canonical summary canonicalises to the same bytes, whatever the
// spelling it was first written in, so stored summaries verify.
func TestCanonicalThroughJSONB(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	d := env.OpenDB(t, 2)
	inputs := []string{
		`{"b": 1, "a": 2}`,
		`{"n": 1.50, "m": 1e3, "k": -0.0, "j": 1.5E-3, "big": 123456789012345678901234567890}`,
		`{"s": "\u00e9\u2028\n\t\"\\/<&>", "t": "\ud83d\ude00"}`,
		`{"nested": {"z": [1, {"y": null, "x": true}], "a": []}, "e": {}}`,
		`{"dup": 1, "dup": 2}`,
		`{"aa": 1, "b": 2, "a": 3, "A": 4, "é": 5}`,
	}
	for _, in := range inputs {
		v, err := decodeJSON([]byte(in))
		if err != nil {
			t.Fatalf("decode %s: %v", in, err)
		}
		want, err := canonicalJSON(v)
		if err != nil {
			t.Fatalf("canonical %s: %v", in, err)
		}
		for name, text := range map[string]string{"original": in, "canonical": string(want)} {
			var back string
			if err := d.Unscoped(t.Context()).Raw("SELECT ?::jsonb::text", text).Scan(&back).Error; err != nil {
				t.Fatalf("jsonb %s: %v", text, err)
			}
			got, err := recanonical([]byte(back))
			if err != nil {
				t.Fatalf("recanonical %s: %v", back, err)
			}
			if string(got) != string(want) {
				t.Errorf("%s %s through jsonb (%s): got %s, want %s", name, in, back, got, want)
			}
		}
	}
}
