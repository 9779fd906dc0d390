package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
)

// errRolledBack makes a test transaction roll back.
var errRolledBack = errors.New("rolled back on purpose")

// TestConcurrentWritersSealed proves that many concurrent transactions of
// one tenant append audit rows without a tenant-wide lock (each holds only
// the shared append lock, and row locks of its own), and that once sealed
// the tenant's chain holds exactly the committed rows, gapless, with seq
// order following position order, and verifies.
func TestConcurrentWritersSealed(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	const writers, perWriter = 16, 50
	app := env.OpenDB(t, writers+2)
	tn := testenv.NewTenant(t)
	startSealer(t)

	var (
		mu        sync.Mutex
		committed = map[string]bool{}
		wg        sync.WaitGroup
	)
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			ctx := actingCtx(context.Background(), tn.ID, fmt.Sprintf("writer-%d", w))
			for i := range perWriter {
				resource := fmt.Sprintf("thing:%d-%d", w, i)
				rollback := i%5 == 4
				err := app.WithTenant(ctx, tn.ID, func(tx *gorm.DB) error {
					if err := tx.Exec(insertProduct, tn.ID, uuid.New(), "w-"+uuid.NewString()[:8]).Error; err != nil {
						return err
					}
					if err := audit.Record(ctx, tx, tn.ID, audit.Entry{Action: "thing.created", Resource: resource,
						Summary: map[string]any{"after": map[string]any{"writer": w, "i": i}}}); err != nil {
						return err
					}
					var locks struct{ Shared, Other int64 }
					if err := tx.Raw(`SELECT
							count(*) FILTER (WHERE classid = 1702232067 AND objid = 0 AND objsubid = 2 AND mode = 'ShareLock') AS shared,
							count(*) FILTER (WHERE NOT (classid = 1702232067 AND objid = 0 AND objsubid = 2 AND mode = 'ShareLock')) AS other
						FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`).Scan(&locks).Error; err != nil {
						return err
					}
					if locks.Shared != 1 || locks.Other != 0 {
						return fmt.Errorf("writer holds %d shared append locks and %d other advisory locks, want 1 and 0", locks.Shared, locks.Other)
					}
					if rollback {
						return errRolledBack
					}
					return nil
				})
				switch {
				case rollback && errors.Is(err, errRolledBack):
				case err != nil:
					errs <- fmt.Errorf("%s: %w", resource, err)
					return
				default:
					mu.Lock()
					committed[resource] = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := writers * perWriter * 4 / 5
	if len(committed) != want {
		t.Fatalf("got %d committed writes, want %d", len(committed), want)
	}

	evs := events(t, app, tn.ID) // in position order, once sealed
	if len(evs) != want {
		t.Fatalf("got %d events, want %d", len(evs), want)
	}
	seen := map[string]bool{}
	for i, e := range evs {
		if !committed[e.Resource] || seen[e.Resource] {
			t.Errorf("got event for %s (seen before: %v), want only committed writes, once each", e.Resource, seen[e.Resource])
		}
		seen[e.Resource] = true
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d in position order (position %d): got seq %d, want %d", i, e.Position, e.Seq, i+1)
		}
		if i > 0 && (e.Position <= evs[i-1].Position || string(e.PrevHash) != string(evs[i-1].Hash)) {
			t.Fatalf("seq %d: position %d after %d, prev_hash linked %v; want increasing positions and linked hashes",
				e.Seq, e.Position, evs[i-1].Position, string(e.PrevHash) == string(evs[i-1].Hash))
		}
	}
	if got := evs[0].PrevHash; string(got) != string(make([]byte, 32)) {
		t.Errorf("seq 1: got prev_hash %x, want 32 zero bytes", got)
	}
	r, err := audit.Verify(t.Context(), app, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Events != int64(want) || r.HeadSeq != int64(want) || string(r.HeadHash) != string(evs[want-1].Hash) || r.Unsealed != 0 {
		t.Errorf("got report %+v (broken %+v), want OK with %d events, head %d, none unsealed", r, r.Broken, want, want)
	}
}

// TestRecordFields proves what Record stores: actor, request id, address
// and User-Agent from the context, cleaned and bounded text, redacted
// summaries, and that odd summaries survive jsonb with the chain intact.
func TestRecordFields(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	tn := testenv.NewTenant(t)
	base := context.Background()

	tests := []struct {
		name        string
		ctx         context.Context
		entry       audit.Entry
		wantActor   string
		wantIP      string
		wantUA      string
		wantReq     string
		wantSummary string
	}{
		{
			name:      "principal from the context",
			ctx:       actingCtx(base, tn.ID, "alice"),
			entry:     audit.Entry{Action: "api_key.created", Resource: "api_key:1", Summary: map[string]any{"after": map[string]any{"name": "ci", "roles": []string{"viewer"}}}},
			wantActor: "api_key:alice", wantIP: "203.0.113.7", wantUA: "test-agent/1.0", wantReq: "req-alice",
			wantSummary: `{"after":{"name":"ci","roles":["viewer"]}}`,
		},
		{
			name:      "explicit actor wins",
			ctx:       actingCtx(base, tn.ID, "alice"),
			entry:     audit.Entry{Actor: "user:bob", Action: "member.signed_in_first", Resource: "member:2"},
			wantActor: "user:bob", wantIP: "203.0.113.7", wantUA: "test-agent/1.0", wantReq: "req-alice", wantSummary: `{}`,
		},
		{
			name:      "no principal, no origin",
			ctx:       base,
			entry:     audit.Entry{Action: "sweep.ran"},
			wantActor: audit.SystemActor, wantSummary: `{}`,
		},
		{
			name: "secrets redacted at any depth",
			ctx:  base,
			entry: audit.Entry{Action: "api_key.created", Summary: map[string]any{
				"after":  map[string]any{"name": "k", "secret": "tk_live_x", "Client_Secret": "s"},
				"tokens": []any{map[string]any{"id_token": "eyJ"}}, "password": 1,
			}},
			wantActor:   audit.SystemActor,
			wantSummary: `{"after":{"Client_Secret":"[redacted]","name":"k","secret":"[redacted]"},"password":"[redacted]","tokens":"[redacted]"}`,
		},
		{
			name:        "numbers and strings canonical through jsonb",
			ctx:         base,
			entry:       audit.Entry{Action: "odd.values", Summary: map[string]any{"big": 1e21, "small": 0.001, "neg": -2.5, "int": int64(9007199254740993), "s": "é<&>\u2028\x00end\ttab", "n": nil, "b": false}},
			wantActor:   audit.SystemActor,
			wantSummary: `{"b":false,"big":1000000000000000000000,"int":9007199254740993,"n":null,"neg":-2.5,"s":"é<&>\u2028end\ttab","small":0.001}`,
		},
		{
			name: "text cleaned and bounded",
			ctx: audit.WithOrigin(identity.WithRequestID(base, "r\x00id"), audit.Origin{
				IP: "2001:DB8::0:1", UserAgent: strings.Repeat("x", 400),
			}),
			entry:     audit.Entry{Actor: "user:\x00eve\n", Action: "x\x01.y", Resource: "/v1/products/%00"},
			wantActor: "user:eve", wantIP: "2001:db8::1", wantUA: strings.Repeat("x", audit.MaxUserAgent), wantReq: "rid",
			wantSummary: `{}`,
		},
		{
			name:  "address that is no address",
			ctx:   audit.WithOrigin(base, audit.Origin{IP: "not-an-ip", UserAgent: "ua"}),
			entry: audit.Entry{Action: "x.y"}, wantActor: audit.SystemActor, wantUA: "ua", wantSummary: `{}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seqBefore int64
			if evs := events(t, app, tn.ID); len(evs) > 0 {
				seqBefore = evs[len(evs)-1].Seq
			}
			record(t, app, tt.ctx, tn.ID, tt.entry)
			evs := events(t, app, tn.ID)
			e := evs[len(evs)-1]
			if e.Seq != seqBefore+1 {
				t.Fatalf("got seq %d, want %d", e.Seq, seqBefore+1)
			}
			got := []string{e.Actor, e.IP, e.UserAgent, e.RequestID, string(e.Summary)}
			want := []string{tt.wantActor, tt.wantIP, tt.wantUA, tt.wantReq, ""}
			var gotSummary any
			if err := json.Unmarshal(e.Summary, &gotSummary); err != nil {
				t.Fatalf("stored summary %s: %v", e.Summary, err)
			}
			var wantSummary any
			if err := json.Unmarshal([]byte(tt.wantSummary), &wantSummary); err != nil {
				t.Fatalf("want summary: %v", err)
			}
			gs, _ := json.Marshal(gotSummary)
			ws, _ := json.Marshal(wantSummary)
			want[4], got[4] = string(ws), string(gs)
			for i, name := range []string{"actor", "ip", "user agent", "request id", "summary"} {
				if got[i] != want[i] {
					t.Errorf("%s: got %q, want %q", name, got[i], want[i])
				}
			}
		})
	}
	r, err := audit.Verify(t.Context(), app, tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Errorf("got broken chain %+v, want it to hold", r.Broken)
	}
}

// TestRecordRefuses proves malformed entries are refused and leave the
// chain alone.
func TestRecordRefuses(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 2)
	tn := testenv.NewTenant(t)
	tests := []struct {
		name  string
		entry audit.Entry
		want  error
	}{
		{"no action", audit.Entry{Resource: "x"}, audit.ErrNoAction},
		{"bad status", audit.Entry{Action: "x", Status: 42}, audit.ErrBadStatus},
		{"huge summary", audit.Entry{Action: "x", Summary: map[string]any{"s": strings.Repeat("a", audit.MaxSummaryBytes)}}, audit.ErrSummaryTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := app.WithTenant(t.Context(), tn.ID, func(tx *gorm.DB) error {
				return audit.Record(t.Context(), tx, tn.ID, tt.entry)
			})
			if !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
		})
	}
	if evs := events(t, app, tn.ID); len(evs) != 0 {
		t.Errorf("got %d events, want 0", len(evs))
	}
}

// TestRLS proves one tenant can neither read another's audit events nor
// append to its chain, and nothing is readable without a tenant.
func TestRLS(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	a, b := testenv.NewTenant(t), testenv.NewTenant(t)
	record(t, app, actingCtx(context.Background(), a.ID, "a"), a.ID, audit.Entry{Action: "a.did"})

	t.Run("B lists none of A's events", func(t *testing.T) {
		if evs := events(t, app, b.ID); len(evs) != 0 {
			t.Errorf("got %d events as B, want 0", len(evs))
		}
	})
	t.Run("B reads no row of A by id", func(t *testing.T) {
		err := app.WithTenant(t.Context(), b.ID, func(tx *gorm.DB) error {
			var n int64
			if err := tx.Raw("SELECT count(*) FROM audit_events WHERE tenant_id = ?", a.ID).Scan(&n).Error; err != nil {
				return err
			}
			if n != 0 {
				t.Errorf("got %d of A's rows as B, want 0", n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no tenant reads nothing", func(t *testing.T) {
		var n int64
		if err := app.Unscoped(t.Context()).Raw("SELECT count(*) FROM audit_events").Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("got %d rows without a tenant, want 0", n)
		}
	})
	t.Run("B cannot append to A's chain", func(t *testing.T) {
		err := app.WithTenant(t.Context(), b.ID, func(tx *gorm.DB) error {
			return audit.Record(t.Context(), tx, a.ID, audit.Entry{Action: "b.forged"})
		})
		if got := sqlState(err); got != "42501" {
			t.Errorf("got error %v (SQLSTATE %q), want SQLSTATE 42501", err, got)
		}
	})
	if evs := events(t, app, a.ID); len(evs) != 1 {
		t.Errorf("got %d events of A, want 1", len(evs))
	}
}

// TestAppendOnly proves the runtime role cannot change or remove audit
// events, even its own tenant's.
func TestAppendOnly(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 2)
	tn := testenv.NewTenant(t)
	record(t, app, context.Background(), tn.ID, audit.Entry{Action: "x.y"})
	waitSealed(t, app, tn.ID)
	for _, stmt := range []string{
		"UPDATE audit_events SET action = 'forged' WHERE seq = 1",
		"UPDATE audit_events SET summary = '{}' WHERE seq = 1",
		"UPDATE audit_events SET position = position + 1 WHERE seq = 1",
		"DELETE FROM audit_events WHERE seq = 1",
		"TRUNCATE audit_events",
		// Sealing's columns, of a row sealed already: refused by the trigger.
		"UPDATE audit_events SET hash = sha256('forged') WHERE seq = 1",
		"UPDATE audit_events SET seq = 7 WHERE seq = 1",
		"UPDATE audit_events SET seq = NULL, prev_hash = NULL, hash = NULL WHERE seq = 1",
	} {
		t.Run(stmt, func(t *testing.T) {
			err := app.WithTenant(t.Context(), tn.ID, func(tx *gorm.DB) error { return tx.Exec(stmt).Error })
			if got := sqlState(err); got != "42501" {
				t.Errorf("got error %v (SQLSTATE %q), want SQLSTATE 42501", err, got)
			}
		})
	}
	t.Run("a superuser is refused too, unless it disables triggers", func(t *testing.T) {
		su := openSuperuser(t, env)
		err := su.Unscoped(t.Context()).Exec("UPDATE audit_events SET actor = 'forged' WHERE tenant_id = ? AND seq = 1", tn.ID).Error
		if got := sqlState(err); got != "42501" {
			t.Errorf("got error %v (SQLSTATE %q), want SQLSTATE 42501", err, got)
		}
	})
	t.Run("an insert cannot bring its own seal", func(t *testing.T) {
		err := app.WithTenant(t.Context(), tn.ID, func(tx *gorm.DB) error {
			return tx.Exec(`INSERT INTO audit_events (tenant_id, id, occurred_at, actor, action, resource, status, seq, prev_hash, hash)
				VALUES (?, ?, now(), 'forger', 'x.forged', '', 0, 2, ?, ?)`, tn.ID, uuid.New(), make([]byte, 32), make([]byte, 32)).Error
		})
		if got := sqlState(err); got != "42501" {
			t.Errorf("got error %v (SQLSTATE %q), want SQLSTATE 42501", err, got)
		}
	})
	waitSealed(t, app, tn.ID)
	if r, err := audit.Verify(t.Context(), app, tn.ID); err != nil || !r.OK() || r.Events != 1 {
		t.Errorf("got report %+v, error %v; want 1 event, intact", r, err)
	}
}

// TestTamperDetected proves Verify finds rows changed or removed by a
// superuser (who ignores row-level security and grants, and can disable the
// trigger that keeps sealed rows as they are), at the right seq and for the
// right reason.
func TestTamperDetected(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	su := openSuperuser(t, env)
	const n = 5

	tests := []struct {
		name       string
		tamper     string // SQL; @t is the tenant, @other another tenant without events
		wantOK     bool
		wantSeq    int64
		wantReason string
		wantHead   int64
	}{
		{"action changed", "UPDATE audit_events SET action = 'nothing.happened' WHERE tenant_id = @t AND seq = 3", false, 3, audit.ReasonHashMismatch, 2},
		{"summary changed", `UPDATE audit_events SET summary = '{"after": {"roles": ["viewer"]}}' WHERE tenant_id = @t AND seq = 2`, false, 2, audit.ReasonHashMismatch, 1},
		{"summary key added", `UPDATE audit_events SET summary = summary || '{"x": 1}' WHERE tenant_id = @t AND seq = 5`, false, 5, audit.ReasonHashMismatch, 4},
		{"actor changed", "UPDATE audit_events SET actor = 'api_key:someone-else' WHERE tenant_id = @t AND seq = 1", false, 1, audit.ReasonHashMismatch, 0},
		{"time changed", "UPDATE audit_events SET occurred_at = occurred_at - interval '1 day' WHERE tenant_id = @t AND seq = 4", false, 4, audit.ReasonHashMismatch, 3},
		{"address changed", "UPDATE audit_events SET ip = '198.51.100.1' WHERE tenant_id = @t AND seq = 2", false, 2, audit.ReasonHashMismatch, 1},
		{"status changed", "UPDATE audit_events SET status = 200 WHERE tenant_id = @t AND seq = 3", false, 3, audit.ReasonHashMismatch, 2},
		{"hash replaced", "UPDATE audit_events SET hash = sha256('forged') WHERE tenant_id = @t AND seq = 3", false, 3, audit.ReasonHashMismatch, 2},
		{"prev_hash replaced", "UPDATE audit_events SET prev_hash = sha256('forged') WHERE tenant_id = @t AND seq = 4", false, 4, audit.ReasonPrevHashMismatch, 3},
		{"middle row deleted", "DELETE FROM audit_events WHERE tenant_id = @t AND seq = 3", false, 3, audit.ReasonGap, 2},
		{"first row deleted", "DELETE FROM audit_events WHERE tenant_id = @t AND seq = 1", false, 1, audit.ReasonGap, 0},
		{"row moved away", "UPDATE audit_events SET tenant_id = @other WHERE tenant_id = @t AND seq = 2", false, 2, audit.ReasonGap, 1},
		// The chain alone cannot show the newest rows removed: only a head
		// kept elsewhere can (see Report).
		{"newest row deleted", "DELETE FROM audit_events WHERE tenant_id = @t AND seq = 5", true, 0, "", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tn := testenv.NewTenant(t)
			ctx := actingCtx(context.Background(), tn.ID, "k")
			for i := range n {
				record(t, app, ctx, tn.ID, audit.Entry{Action: "role.updated", Resource: "role:r" + string(rune('0'+i)), Status: 0,
					Summary: map[string]any{"after": map[string]any{"roles": []string{"admin"}}}})
			}
			waitSealed(t, app, tn.ID)
			if r, err := audit.Verify(t.Context(), app, tn.ID); err != nil || !r.OK() {
				t.Fatalf("before tampering: got report %+v, error %v; want intact", r, err)
			}
			other := testenv.NewTenant(t)
			if n := tamper(t, su, tt.tamper, map[string]any{"t": tn.ID, "other": other.ID}); n != 1 {
				t.Fatalf("tamper: got %d rows, want 1", n)
			}
			r, err := audit.Verify(t.Context(), app, tn.ID)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK() != tt.wantOK {
				t.Fatalf("got OK %v (broken %+v), want %v", r.OK(), r.Broken, tt.wantOK)
			}
			if !tt.wantOK && (r.Broken.Seq != tt.wantSeq || r.Broken.Reason != tt.wantReason) {
				t.Errorf("got break at seq %d (%s: %s), want seq %d (%s)", r.Broken.Seq, r.Broken.Reason, r.Broken.Detail, tt.wantSeq, tt.wantReason)
			}
			if r.HeadSeq != tt.wantHead {
				t.Errorf("got head seq %d, want %d", r.HeadSeq, tt.wantHead)
			}
		})
	}
}
