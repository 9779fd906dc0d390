package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/migrations"
)

// migrationsUpTo returns the embedded migrations numbered up to version.
func migrationsUpTo(t *testing.T, version string) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	names, err := fs.Glob(migrations.Files, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name[:4] > version {
			continue
		}
		b, err := fs.ReadFile(migrations.Files, name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = &fstest.MapFile{Data: b}
	}
	return out
}

// versionsAfter counts the embedded migrations numbered after version.
func versionsAfter(t *testing.T, version string) int {
	t.Helper()
	ups, err := fs.Glob(migrations.Files, "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range ups {
		if name[:4] > version {
			n++
		}
	}
	return n
}

// bindingShim creates (or drops) stand-ins for 0024's app_bind_tenant and
// app_bind_platform, through which db.WithTenant and WithPlatform bind, so
// that today's code can run on a schema older than 0024.
func bindingShim(t *testing.T, ownerURL string, create bool) {
	t.Helper()
	owner, err := db.Open(t.Context(), ownerURL, db.Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	stmts := []string{"DROP FUNCTION app_bind_tenant(uuid)", "DROP FUNCTION app_bind_platform()"}
	if create {
		stmts = []string{
			`CREATE FUNCTION app_bind_tenant(p uuid) RETURNS void LANGUAGE plpgsql AS
				$$ BEGIN EXECUTE format('SET LOCAL app.tenant_id = %L', p::text); END $$`,
			`CREATE FUNCTION app_bind_platform() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET LOCAL app.platform = 'on'; END $$`,
		}
	}
	for _, q := range stmts {
		if err := owner.Unscoped(t.Context()).Exec(q).Error; err != nil {
			t.Fatalf("binding shim: %v", err)
		}
	}
}

// TestSealMigration proves migration 0011 keeps the chains written under
// the per-tenant lock: they verify, get positions in seq order, and go on
// from their heads once sealed (on the latest schema, which today's Record
// needs); that it migrates down to chains without positions once
// everything is sealed, and refuses while rows are unsealed.
func TestSealMigration(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	ctx := t.Context()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "tenantd_test_seal_" + hex.EncodeToString(b)
	dbase, err := devenv.Provision(ctx, env.AdminURL, name)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	t.Cleanup(func() {
		if err := devenv.Drop(context.Background(), env.AdminURL, name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	migrate := func(t *testing.T, files fs.FS, down int) error {
		t.Helper()
		m, err := db.NewMigrator(dbase.OwnerURL, files)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if down > 0 {
			return m.Down(down)
		}
		return m.Up()
	}
	if err := migrate(t, migrationsUpTo(t, "0010"), 0); err != nil {
		t.Fatalf("migrate to 0010: %v", err)
	}
	bindingShim(t, dbase.OwnerURL, true)
	owner, err := db.Open(ctx, dbase.OwnerURL, db.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close() })
	app, err := db.Open(ctx, dbase.AppURL, db.Options{MaxConns: 4, WorkerURL: dbase.WorkerURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })

	// Two tenants' chains of three, written interleaved the 0010 way.
	tenants := []uuid.UUID{uuid.New(), uuid.New()}
	for _, id := range tenants {
		testenv.NewTenant(t, testenv.InDB(owner), testenv.WithID(id))
	}
	heads := map[uuid.UUID][]byte{}
	for seq := int64(1); seq <= 3; seq++ {
		for _, id := range tenants {
			e, err := newEvent(ctx, id, Entry{Action: "old.written", Summary: map[string]any{"n": seq}}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			e.Seq, e.PrevHash = seq, genesis
			if seq > 1 {
				e.PrevHash = heads[id]
			}
			e.Hash = e.computeHash()
			heads[id] = e.Hash
			testenv.Exec(t, app, id, `INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor, action, resource, status,
					summary, request_id, ip, user_agent, prev_hash, hash)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, nullif(?, '')::inet, ?, ?, ?)`,
				e.TenantID, e.Seq, e.ID, e.OccurredAt, e.Actor, e.Action, e.Resource, e.Status,
				string(e.Summary), e.RequestID, e.IP, e.UserAgent, e.PrevHash, e.Hash)
		}
	}

	// Later migrations are not this test's: 0011 alone goes up and down.
	upTo11 := migrationsUpTo(t, "0011")
	if err := migrate(t, upTo11, 0); err != nil {
		t.Fatalf("migrate to 0011: %v", err)
	}
	verify := func(t *testing.T, id uuid.UUID, events int64) []Event {
		t.Helper()
		r, err := Verify(ctx, app, id)
		if err != nil || !r.OK() || r.Events != events || r.Unsealed != 0 {
			t.Fatalf("got report %+v (broken %+v), error %v; want %d events intact, none unsealed", r, r.Broken, err, events)
		}
		var evs []Event
		if err := app.WithTenant(ctx, id, func(tx *gorm.DB) (err error) {
			evs, err = chainPage(tx, id, 0, 100)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Position <= evs[i-1].Position {
				t.Errorf("seq %d at position %d after %d: want positions in seq order", evs[i].Seq, evs[i].Position, evs[i-1].Position)
			}
		}
		return evs
	}
	for _, id := range tenants {
		if evs := verify(t, id, 3); evs[0].Position == 0 {
			t.Errorf("got position 0, want one from events_position_seq")
		}
	}

	// The chain goes on from its old head, sealed after commit, written by
	// today's code on the latest schema.
	bindingShim(t, dbase.OwnerURL, false)
	if err := migrate(t, migrations.Files, 0); err != nil {
		t.Fatalf("migrate to the latest: %v", err)
	}
	aud := New(app, slog.New(slog.DiscardHandler), Options{SealInterval: 10 * time.Millisecond})
	sealCtx, stopSealer := context.WithCancel(ctx)
	sealerDone := make(chan struct{})
	go func() { defer close(sealerDone); aud.RunSealer(sealCtx) }()
	if err := app.WithTenant(ctx, tenants[0], func(tx *gorm.DB) error {
		return Record(ctx, tx, tenants[0], Entry{Action: "new.written"})
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := Verify(ctx, app, tenants[0])
		if err != nil {
			t.Fatal(err)
		}
		if r.Unsealed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d rows unsealed after 10 s, want them sealed", r.Unsealed)
		}
		time.Sleep(10 * time.Millisecond) // polled: each try verifies the chains
	}
	if evs := verify(t, tenants[0], 4); evs[3].Action != "new.written" || evs[3].Seq != 4 {
		t.Errorf("got newest %+v, want new.written at seq 4", evs[3])
	}
	stopSealer()
	<-sealerDone

	downTo10 := versionsAfter(t, "0010")
	if err := migrate(t, migrations.Files, downTo10); err != nil {
		t.Fatalf("migrate down: %v", err)
	}
	var positions int64
	if err := owner.Unscoped(ctx).Raw(`SELECT count(*) FROM information_schema.columns
		WHERE table_name = 'audit_events' AND column_name IN ('position', 'txid')`).Scan(&positions).Error; err != nil {
		t.Fatal(err)
	}
	if positions != 0 {
		t.Errorf("got %d of position and txid after migrating down, want 0", positions)
	}

	if err := migrate(t, migrations.Files, 0); err != nil {
		t.Fatalf("migrate up again: %v", err)
	}
	verify(t, tenants[0], 4)
	verify(t, tenants[1], 3)
	// With no sealer running, a new row stays unsealed: down refuses.
	if err := app.WithTenant(ctx, tenants[1], func(tx *gorm.DB) error {
		return Record(ctx, tx, tenants[1], Entry{Action: "late.written"})
	}); err != nil {
		t.Fatal(err)
	}
	if err := migrate(t, migrations.Files, downTo10); err == nil || !strings.Contains(err.Error(), "not sealed yet") {
		t.Errorf("migrate down with a row unsealed: got %v, want a refusal", err)
	}
}
