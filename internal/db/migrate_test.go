package db_test

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/migrations"
)

func newMigrator(t testing.TB, ownerURL string) *db.Migrator {
	t.Helper()
	m, err := db.NewMigrator(ownerURL, migrations.Files)
	if err != nil {
		t.Fatalf("new migrator: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close migrator: %v", err)
		}
	})
	return m
}

func latestVersion(t testing.TB) uint {
	t.Helper()
	v, err := db.LatestVersion(migrations.Files)
	if err != nil {
		t.Fatalf("latest version: %v", err)
	}
	if v == 0 {
		t.Fatal("got latest version 0, want the embedded migrations")
	}
	return v
}

func wantStatus(t testing.TB, m *db.Migrator, want db.Status) {
	t.Helper()
	got, err := m.Status(migrations.Files)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if got != want {
		t.Fatalf("got status %+v, want %+v", got, want)
	}
}

// TestMigrationStatus proves the package database is at the latest version,
// that a repeated Up is a no-op, and that the runtime role reads the version.
func TestMigrationStatus(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	latest := latestVersion(t)
	m := newMigrator(t, env.OwnerURL)
	wantStatus(t, m, db.Status{Current: latest, Latest: latest})
	if err := m.Up(); err != nil {
		t.Fatalf("got %v from a repeated Up, want nil", err)
	}
	wantStatus(t, m, db.Status{Current: latest, Latest: latest})

	v, dirty, err := env.OpenDB(t, 1).SchemaVersion(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if v != latest || dirty {
		t.Errorf("got SchemaVersion %d dirty=%v, want %d dirty=false", v, dirty, latest)
	}
}

// TestMigrationsRoundTrip migrates a database of its own up, all the way
// down and up again: the down migrations must undo everything the up ones
// create, and the runtime role must work on the result.
func TestMigrationsRoundTrip(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	latest := latestVersion(t)
	name := "tenantd_test_migrate_" + testenv.RandomHex(4)
	dbase, err := devenv.Provision(t.Context(), env.AdminURL, name)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	t.Cleanup(func() {
		if err := devenv.Drop(context.Background(), env.AdminURL, name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	owner, err := db.Open(t.Context(), dbase.OwnerURL, db.Options{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Close() })
	objects := []string{"plans", "tenants", "api_keys", "products", "auth_api_key_lookup(text)"}
	wantObjects := func(t *testing.T, exist bool) {
		t.Helper()
		for _, obj := range objects {
			var got bool
			q := "SELECT to_regclass(?) IS NOT NULL"
			if obj[len(obj)-1] == ')' {
				q = "SELECT to_regprocedure(?) IS NOT NULL"
			}
			if err := owner.Unscoped(t.Context()).Raw(q, "public."+obj).Scan(&got).Error; err != nil {
				t.Fatal(err)
			}
			if got != exist {
				t.Errorf("%s: got exists=%v, want %v", obj, got, exist)
			}
		}
	}

	m := newMigrator(t, dbase.OwnerURL)
	wantStatus(t, m, db.Status{Latest: latest})
	wantObjects(t, false)

	steps := []struct {
		name  string
		run   func() error
		want  db.Status
		exist bool
	}{
		{"up", m.Up, db.Status{Current: latest, Latest: latest}, true},
		{"down", func() error { return m.Down(0) }, db.Status{Latest: latest}, false},
		{"up again", m.Up, db.Status{Current: latest, Latest: latest}, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if err := s.run(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			wantStatus(t, m, s.want)
			wantObjects(t, s.exist)
		})
	}

	app, err := db.Open(t.Context(), dbase.AppURL, db.Options{MaxConns: 1})
	if err != nil {
		t.Fatalf("open runtime role on the re-migrated database: %v", err)
	}
	t.Cleanup(func() { app.Close() })
	if err := app.CheckRuntimeRole(t.Context()); err != nil {
		t.Errorf("CheckRuntimeRole after round trip: got %v, want nil", err)
	}
	if v, dirty, err := app.SchemaVersion(t.Context()); err != nil || v != latest || dirty {
		t.Errorf("SchemaVersion after round trip: got %d dirty=%v err=%v, want %d dirty=false", v, dirty, err, latest)
	}
}

func TestLatestVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    uint
		wantErr bool
	}{
		{"none", fstest.MapFS{}, 0, false},
		{"highest up wins", fstest.MapFS{
			"0001_a.up.sql": {}, "0001_a.down.sql": {},
			"0003_c.up.sql": {}, "0002_b.up.sql": {},
			"0009_d.down.sql": {}, "embed.go": {},
		}, 3, false},
		{"bad name", fstest.MapFS{"first_a.up.sql": {}}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.LatestVersion(tt.files)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}
