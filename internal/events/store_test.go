package events_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
)

func versionsOf(es []events.Event) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Version
	}
	return out
}

// TestAppendVersions proves optimistic concurrency on one stream: the
// expected version must be the current one, AnyVersion skips the check, and
// versions continue from the current one.
func TestAppendVersions(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 2)
	b := testenv.NewTenant(t).ID
	two := []events.NewEvent{{Type: typ, Data: 1}, {Type: typ, Data: 2}}
	one := []events.NewEvent{{Type: typ, Data: 3}}

	tests := []struct {
		name     string
		tenant   uuid.UUID
		stream   string
		expected int64
		evs      []events.NewEvent
		want     []int64
		wantCode fault.Code // "" for success
	}{
		{"new stream", a, "acct", 0, two, []int64{1, 2}, ""},
		{"new stream again", a, "acct", 0, one, nil, fault.Conflict},
		{"stale version", a, "acct", 1, one, nil, fault.Conflict},
		{"version ahead", a, "acct", 7, one, nil, fault.Conflict},
		{"current version", a, "acct", 2, one, []int64{3}, ""},
		{"any version", a, "acct", events.AnyVersion, two, []int64{4, 5}, ""},
		{"same name in another tenant is another stream", b, "acct", 0, one, []int64{1}, ""},
		{"expected below -1", a, "acct", -2, one, nil, fault.Validation},
		{"empty stream id", a, "", 0, one, nil, fault.Validation},
		{"empty type", a, "other", 0, []events.NewEvent{{Data: 1}}, nil, fault.Validation},
		{"no events", a, "acct", 5, nil, []int64{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []events.Event
			var appendErr error
			inTenant(t, app, tt.tenant, func(tx *gorm.DB) error {
				got, appendErr = events.Append(t.Context(), tx, tt.tenant, tt.stream, tt.expected, tt.evs...)
				return nil // commit what succeeded; a conflict wrote nothing
			})
			if tt.wantCode != "" {
				if code := fault.CodeOf(appendErr); code != tt.wantCode {
					t.Fatalf("got error %v (code %s), want code %s", appendErr, code, tt.wantCode)
				}
				if tt.wantCode == fault.Conflict && !errors.Is(appendErr, events.ErrVersionConflict) {
					t.Errorf("got %v, want ErrVersionConflict", appendErr)
				}
				return
			}
			if appendErr != nil {
				t.Fatalf("got %v, want no error", appendErr)
			}
			if gv := versionsOf(got); !slices.Equal(gv, tt.want) {
				t.Errorf("got versions %v, want %v", gv, tt.want)
			}
			for i, e := range got {
				if e.Position == 0 || e.ID == uuid.Nil || e.CreatedAt.IsZero() || e.TenantID != tt.tenant || e.StreamID != tt.stream {
					t.Errorf("event %d: got %+v, want position, id, created_at, tenant and stream set", i, e)
				}
				if i > 0 && e.Position <= got[i-1].Position {
					t.Errorf("got positions %d then %d, want increasing", got[i-1].Position, e.Position)
				}
			}
		})
	}

	t.Run("stored as returned", func(t *testing.T) {
		inTenant(t, app, a, func(tx *gorm.DB) error {
			es, err := events.Load(t.Context(), tx, a, "acct")
			if err != nil {
				return err
			}
			if gv := versionsOf(es); !slices.Equal(gv, []int64{1, 2, 3, 4, 5}) {
				t.Errorf("got versions %v, want [1 2 3 4 5]", gv)
			}
			var data []int
			for _, e := range es {
				var n int
				if err := json.Unmarshal(e.Data, &n); err != nil {
					t.Fatalf("decode data %s: %v", e.Data, err)
				}
				data = append(data, n)
			}
			if !slices.Equal(data, []int{1, 2, 3, 1, 2}) {
				t.Errorf("got data %v, want [1 2 3 1 2]", data)
			}
			return nil
		})
	})

	t.Run("transaction usable after a conflict", func(t *testing.T) {
		inTenant(t, app, a, func(tx *gorm.DB) error {
			if _, err := events.Append(t.Context(), tx, a, "acct", 1, one...); !errors.Is(err, events.ErrVersionConflict) {
				t.Fatalf("got %v, want ErrVersionConflict", err)
			}
			got, err := events.Append(t.Context(), tx, a, "acct", 5, one...)
			if err != nil {
				return err
			}
			if gv := versionsOf(got); !slices.Equal(gv, []int64{6}) {
				t.Errorf("got versions %v, want [6]", gv)
			}
			return nil
		})
	})
}

// TestAppendConcurrent proves two transactions appending to one stream at
// once: at the same expected version exactly one wins, with AnyVersion both
// do, one after the other, and a REPEATABLE READ transaction that read an
// old snapshot gets a conflict rather than a duplicate version.
func TestAppendConcurrent(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 4)
	ev := events.NewEvent{Type: typ, Data: "x"}

	tests := []struct {
		name         string
		expected     int64
		wantConflict bool
		wantVersion  int64
	}{
		{"same expected version", 0, true, 0},
		{"any version", events.AnyVersion, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			stream := "race-" + testenv.RandomHex(4)
			tx1 := app.Unscoped(ctx).Begin()
			t.Cleanup(func() { tx1.Rollback() })
			if err := db.SetTenant(tx1, a); err != nil {
				t.Fatal(err)
			}
			if _, err := events.Append(ctx, tx1, a, stream, tt.expected, ev); err != nil {
				t.Fatalf("first append: %v", err)
			}
			type result struct {
				evs []events.Event
				err error
			}
			second := make(chan result, 1)
			go func() {
				var r result
				r.err = app.WithTenant(ctx, a, func(tx *gorm.DB) error {
					r.evs, r.err = events.Append(ctx, tx, a, stream, tt.expected, ev)
					return r.err
				})
				second <- r
			}()
			select {
			case r := <-second:
				t.Fatalf("second append returned %v before the first committed, want it to wait", r.err)
			case <-time.After(200 * time.Millisecond):
			}
			if err := tx1.Commit().Error; err != nil {
				t.Fatalf("commit first: %v", err)
			}
			r := <-second
			if tt.wantConflict {
				if !errors.Is(r.err, events.ErrVersionConflict) {
					t.Fatalf("got %v from the second append, want ErrVersionConflict", r.err)
				}
				return
			}
			if r.err != nil {
				t.Fatalf("got %v from the second append, want success", r.err)
			}
			if r.evs[0].Version != tt.wantVersion {
				t.Errorf("got version %d, want %d", r.evs[0].Version, tt.wantVersion)
			}
		})
	}

	t.Run("repeatable read on an old snapshot", func(t *testing.T) {
		ctx := t.Context()
		stream := "rr-" + testenv.RandomHex(4)
		tx1 := app.Unscoped(ctx).Begin(&sql.TxOptions{Isolation: sql.LevelRepeatableRead})
		t.Cleanup(func() { tx1.Rollback() })
		if err := db.SetTenant(tx1, a); err != nil {
			t.Fatal(err)
		}
		if _, err := events.Load(ctx, tx1, a, stream); err != nil { // takes the snapshot
			t.Fatal(err)
		}
		appendOne(t, app, a, stream, 0, typ, "other")
		_, err := events.Append(ctx, tx1, a, stream, 0, ev)
		if !errors.Is(err, events.ErrVersionConflict) {
			t.Fatalf("got %v, want ErrVersionConflict", err)
		}
	})
}

// TestMetadata proves Append fills metadata from the context: request id,
// actor, and causation and correlation from WithCause.
func TestMetadata(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 2)
	base := context.Background()
	request := identity.WithPrincipal(identity.WithRequestID(base, "req-1"),
		identity.Principal{Kind: identity.KindAPIKey, TenantID: a, Subject: "key-1"})

	appendIn := func(t *testing.T, ctx context.Context, stream string, n int) []events.Event {
		t.Helper()
		evs := make([]events.NewEvent, n)
		for i := range evs {
			evs[i] = events.NewEvent{Type: typ, Data: i}
		}
		var out []events.Event
		err := app.WithTenant(ctx, a, func(tx *gorm.DB) error {
			var err error
			out, err = events.Append(ctx, tx, a, stream, events.AnyVersion, evs...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	root := appendIn(t, request, "meta-root", 2)
	child := appendIn(t, events.WithCause(base, root[1]), "meta-child", 1)
	grandchild := appendIn(t, events.WithCause(identity.WithRequestID(base, "req-2"), child[0]), "meta-grandchild", 1)

	tests := []struct {
		name string
		got  events.Event
		want events.Metadata
	}{
		{"first of a request", root[0], events.Metadata{RequestID: "req-1", Actor: "api_key:key-1", CorrelationID: root[0].ID.String()}},
		{"second of a request", root[1], events.Metadata{RequestID: "req-1", Actor: "api_key:key-1", CorrelationID: root[0].ID.String()}},
		{"caused, no request", child[0], events.Metadata{RequestID: "req-1", CausationID: root[1].ID.String(), CorrelationID: root[0].ID.String()}},
		{"caused, own request", grandchild[0], events.Metadata{RequestID: "req-2", CausationID: child[0].ID.String(), CorrelationID: root[0].ID.String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got.Metadata != tt.want {
				t.Errorf("got returned metadata %+v, want %+v", tt.got.Metadata, tt.want)
			}
			inTenant(t, app, a, func(tx *gorm.DB) error {
				stored, err := events.Load(t.Context(), tx, a, tt.got.StreamID)
				if err != nil {
					return err
				}
				i := slices.IndexFunc(stored, func(e events.Event) bool { return e.ID == tt.got.ID })
				if i < 0 {
					t.Fatalf("event %s not stored", tt.got.ID)
				}
				if stored[i].Metadata != tt.want {
					t.Errorf("got stored metadata %+v, want %+v", stored[i].Metadata, tt.want)
				}
				return nil
			})
		})
	}

	t.Run("json", func(t *testing.T) {
		b, err := json.Marshal(events.Metadata{RequestID: "r", CausationID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(b), `{"request_id":"r","causation_id":"c"}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
}

// TestTenantIsolation proves a tenant's transaction reads and writes only
// its own events, and that no transaction can change or delete one.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 2)
	b := testenv.NewTenant(t).ID
	ctx := t.Context()
	ea := appendOne(t, app, a, "shared-name", 0, typ, "a")
	eb := appendOne(t, app, b, "shared-name", 0, typ, "b")
	after := min(ea.Position, eb.Position) - 1

	ids := func(es []events.Event) []uuid.UUID {
		out := []uuid.UUID{}
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	own := map[uuid.UUID][]uuid.UUID{a: {ea.ID}, b: {eb.ID}}
	tests := []struct {
		name string
		run  func(fn func(tx *gorm.DB) error) error
		sees uuid.UUID // the one tenant whose events the transaction reads; uuid.Nil: none
	}{
		{"tenant A", func(fn func(tx *gorm.DB) error) error { return app.WithTenant(ctx, a, fn) }, a},
		{"tenant B", func(fn func(tx *gorm.DB) error) error { return app.WithTenant(ctx, b, fn) }, b},
		{"no tenant", func(fn func(tx *gorm.DB) error) error { return app.Unscoped(ctx).Transaction(fn) }, uuid.Nil},
		{"platform", func(fn func(tx *gorm.DB) error) error { return app.WithPlatform(ctx, fn) }, uuid.Nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(func(tx *gorm.DB) error {
				// Asked for either tenant by name, row-level security still
				// shows the transaction's own events only.
				for _, asked := range []uuid.UUID{a, b} {
					want := []uuid.UUID{}
					if asked == tt.sees {
						want = own[asked]
					}
					loaded, err := events.Load(ctx, tx, asked, "shared-name")
					if err != nil {
						return err
					}
					if got := ids(loaded); !slices.Equal(got, want) {
						t.Errorf("Load of tenant %s: got %v, want %v", asked, got, want)
					}
					listed, err := events.List(ctx, tx, asked, after, 10, []string{typ})
					if err != nil {
						return err
					}
					if got := ids(listed); !slices.Equal(got, want) {
						t.Errorf("List of tenant %s: got %v, want %v", asked, got, want)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}

	writes := []struct {
		name string
		run  func(tx *gorm.DB) error
	}{
		{"append for another tenant", func(tx *gorm.DB) error {
			_, err := events.Append(ctx, tx, b, "intruder", events.AnyVersion, events.NewEvent{Type: typ, Data: 1})
			return err
		}},
		{"update own event", func(tx *gorm.DB) error {
			return tx.Exec("UPDATE events SET type = 'changed' WHERE id = ?", ea.ID).Error
		}},
		{"delete own event", func(tx *gorm.DB) error {
			return tx.Exec("DELETE FROM events WHERE id = ?", ea.ID).Error
		}},
	}
	for _, tt := range writes {
		t.Run(tt.name, func(t *testing.T) {
			err := app.WithTenant(ctx, a, tt.run)
			if got := sqlState(err); got != "42501" {
				t.Errorf("got error %v (SQLSTATE %q), want SQLSTATE 42501", err, got)
			}
		})
	}

	t.Run("list filters by type", func(t *testing.T) {
		other := appendOne(t, app, a, "shared-name", 1, typ+".other", "a2")
		inTenant(t, app, a, func(tx *gorm.DB) error {
			for _, c := range []struct {
				types []string
				want  []uuid.UUID
			}{
				{nil, []uuid.UUID{ea.ID, other.ID}},
				{[]string{typ}, []uuid.UUID{ea.ID}},
				{[]string{typ + ".other"}, []uuid.UUID{other.ID}},
			} {
				got, err := events.List(ctx, tx, a, after, 10, c.types)
				if err != nil {
					return err
				}
				if g := ids(got); !slices.Equal(g, c.want) {
					t.Errorf("types %v: got %v, want %v", c.types, g, c.want)
				}
			}
			return nil
		})
	})
}

// TestInsertDefaults proves an insert that names neither position nor txid
// gets them as Append's do (the columns' defaults, migrations/0025): a
// position from events_position_seq drawn under the shared append lock,
// and the transaction's own id.
func TestInsertDefaults(t *testing.T) {
	t.Parallel()
	app, a, _ := newTenantLog(t, 2)
	inTenant(t, app, a, func(tx *gorm.DB) error {
		var got struct {
			FromSequence bool
			Own          bool
		}
		err := tx.Raw(`INSERT INTO events (tenant_id, id, stream_id, version, type, data)
			VALUES (?, ?, 'defaults', 1, 'test.defaults', '{}')
			RETURNING position = currval('events_position_seq') AS from_sequence,
			          txid = pg_current_xact_id() AS own`, a, uuid.New()).Scan(&got).Error
		if err != nil {
			return err
		}
		if !got.FromSequence || !got.Own {
			t.Errorf("got position from the sequence %v, own txid %v, want both", got.FromSequence, got.Own)
		}
		var locked bool
		if err := tx.Raw(`SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'
			AND classid = 1702232067 AND objid = 0 AND objsubid = 2 AND mode = 'ShareLock' AND granted)`).Scan(&locked).Error; err != nil {
			return err
		}
		if !locked {
			t.Error("the transaction does not hold the shared append lock, want it held to its end")
		}
		return nil
	})
}
