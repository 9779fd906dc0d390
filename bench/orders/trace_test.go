package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestSignature(t *testing.T) {
	for _, tc := range []struct {
		stmt, want string
	}{
		{"SELECT app_bind_tenant($1)", "select app_bind_tenant"},
		{"SELECT app_bind_tenant(t.tenant_id) AS tenant_id,\n  t.a_id", "select app_bind_tenant"},
		{`INSERT INTO "reservations" ("tenant_id","id") VALUES ($1,$2)`, "insert into reservations"},
		{"UPDATE products SET stock_reserved = stock_reserved + $1", "update products set stoc"},
		{"SELECT seq, hash FROM audit_events WHERE tenant_id = :tenant_id ORDER BY seq DESC LIMIT 1 \\gset audit_", "select seq, hash from au"},
		{"begin", "begin"},
		{"COMMIT;", "commit"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := signature(tc.stmt); got != tc.want {
				t.Errorf("signature(%q): got %q, want %q", tc.stmt, got, tc.want)
			}
		})
	}
}

// A log in which another backend's transaction interleaves with the
// placement's, and a statement spans lines.
const sampleLog = `2026-11-26 17:08:08.778 UTC [7] LOG:  execute s1: SELECT * FROM auth_api_key_lookup($1)
2026-11-26 17:08:08.778 UTC [7] DETAIL:  parameters: $1 = 'x'
2026-11-26 17:08:08.780 UTC [7] LOG:  statement: begin
2026-11-26 17:08:08.780 UTC [9] LOG:  statement: begin
2026-11-26 17:08:08.780 UTC [7] LOG:  execute s2: SELECT app_bind_tenant($1)
2026-11-26 17:08:08.781 UTC [9] LOG:  execute s3: SELECT position FROM event_checkpoints WHERE subscriber = $1 FOR UPDATE
2026-11-26 17:08:08.781 UTC [7] LOG:  execute s4: UPDATE products SET stock_reserved = stock_reserved + $1
		WHERE tenant_id = $2
2026-11-26 17:08:08.782 UTC [9] LOG:  statement: commit
2026-11-26 17:08:08.787 UTC [7] LOG:  execute s5: INSERT INTO events (tenant_id) VALUES ($1) RETURNING id
2026-11-26 17:08:08.793 UTC [7] LOG:  statement: commit
`

// A transaction begun in one message with the tenant's binding, as
// db.WithTenant sends it.
const compoundLog = `2026-12-05 19:25:59.535 UTC [13254] LOG:  statement: BEGIN; SELECT app_bind_tenant('01a247ab-98cb-7e28-b595-2550fb1255fe')
2026-12-05 19:25:59.536 UTC [13254] LOG:  execute stmtcache_1: WITH want (reservation_id) AS (VALUES ($1::uuid))
		SELECT 1
2026-12-05 19:25:59.538 UTC [13254] LOG:  execute stmtcache_2: INSERT INTO events (tenant_id) SELECT * FROM (VALUES ($1::uuid)) AS v
2026-12-05 19:25:59.540 UTC [13254] LOG:  statement: commit
`

// TestPlacementStatements reads the placement's statements from both logs,
// and finds none in a log without one.
func TestPlacementStatements(t *testing.T) {
	for _, tc := range []struct {
		name, log string
		want      []string
	}{
		{"interleaved", sampleLog, []string{"select app_bind_tenant", "update products set stoc", "insert into events"}},
		{"compound", compoundLog, []string{"begin; select app_bind_tenant", "with want", "insert into events"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := placementStatements(tc.log)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := placementStatements(strings.ReplaceAll(sampleLog, "INSERT INTO events", "INSERT INTO other")); err == nil {
		t.Error("got a placement from a log without one, want an error")
	}
}

// TestScriptStatements reads place_order.sql as the run compares it: every
// statement of a placement, in order, without BEGIN and COMMIT, along the
// two-item (\if) and the one-item (\else) path alike.
func TestScriptStatements(t *testing.T) {
	want := []string{
		"begin; select app_bind_tenant",
		"with want",
		"insert into events",
		"insert into order_views",
		"insert into audit_events",
	}
	for _, ifs := range []bool{true, false} {
		if got := scriptStatements(placeOrderSQL, ifs); !slices.Equal(got, want) {
			t.Errorf("ifs=%v: got %q,\nwant %q", ifs, got, want)
		}
	}
}

// TestScriptPaths follows conditionals, nested ones too, on either path,
// leaves out what comes before BEGIN, and counts a pipeline as one round
// trip.
func TestScriptPaths(t *testing.T) {
	const script = `\set x 1
SELECT helper \gset
\startpipeline
BEGIN;
SELECT a;
\endpipeline
SELECT b;
\if :x = 1
UPDATE b
    SET c = 1;
\if :y = 2
DELETE FROM d;
\endif
\else
INSERT INTO e VALUES (1);
\endif
SELECT f \gset
COMMIT;
`
	for _, tc := range []struct {
		ifs  bool
		want []string
	}{
		{true, []string{"begin; select a", "select b", "update b set c = 1", "delete from d", "select f"}},
		{false, []string{"begin; select a", "select b", "insert into e values", "select f"}},
	} {
		t.Run(fmt.Sprint(tc.ifs), func(t *testing.T) {
			if got := scriptStatements([]byte(script), tc.ifs); !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
