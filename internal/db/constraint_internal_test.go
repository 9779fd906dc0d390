package db

import "testing"

func TestSameConstraint(t *testing.T) {
	cases := []struct {
		got, want string
		same      bool
	}{
		{"tenants_slug_key", "tenants_slug_key", true},
		{"tenants_slug_key_102008", "tenants_slug_key", true}, // a Citus shard's copy
		{"tenants_slug_key_", "tenants_slug_key", false},
		{"tenants_slug_key_x1", "tenants_slug_key", false},
		{"tenants_slug_key_other_1", "tenants_slug_key", false},
		{"events_stream_version_key", "events_stream_key", false},
		{"tenants_slug", "tenants_slug_key", false},
	}
	for _, c := range cases {
		if got := sameConstraint(c.got, c.want); got != c.same {
			t.Errorf("sameConstraint(%q, %q) = %v, want %v", c.got, c.want, got, c.same)
		}
	}
}
