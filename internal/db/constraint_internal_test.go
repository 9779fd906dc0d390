package db

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

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

func TestConstraintName(t *testing.T) {
	cases := []struct {
		pg   pgconn.PgError
		want string
	}{
		{pgconn.PgError{ConstraintName: "tenants_slug_key"}, "tenants_slug_key"},
		// Citus relays a worker's error with its message only.
		{pgconn.PgError{Message: `duplicate key value violates unique constraint "tenants_slug_key_102019"`}, "tenants_slug_key_102019"},
		{pgconn.PgError{Message: `insert or update on table "x" violates foreign key constraint "x_fk_1"`}, "x_fk_1"},
		{pgconn.PgError{Message: "something else"}, ""},
	}
	for _, c := range cases {
		if got := constraintName(&c.pg); got != c.want {
			t.Errorf("constraintName(%+v) = %q, want %q", c.pg, got, c.want)
		}
	}
}
