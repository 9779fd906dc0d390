package db_test

import (
	"errors"
	"testing"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/migrations"
)

// TestDownAcrossCitusDistribute rolls back migration 0026
// (citus_distribute) on a database of its own. On plain PostgreSQL it does
// nothing, so rolling it back and applying it again works like any other
// migration. On Citus, Down refuses before anything runs (ErrCitusDown),
// whether asked for that one step or for all of them, and leaves the
// version as it was and clean, not dirty one below; a Down that stops
// short of 0026 is not refused.
func TestDownAcrossCitusDistribute(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	latest := latestVersion(t)
	if latest < db.CitusDistributeVersion {
		t.Fatalf("got latest version %d, want at least %d", latest, db.CitusDistributeVersion)
	}
	dbase := env.NewDatabase(t) // migrated, and on Citus distributed
	m := newMigrator(t, dbase.OwnerURL)
	top := db.Status{Current: latest, Latest: latest}
	wantStatus(t, m, top)

	// Down to 0026 itself, one step at a time: never refused.
	at := db.Status{Current: db.CitusDistributeVersion, Latest: latest}
	for {
		st, err := m.Status(migrations.Files)
		if err != nil {
			t.Fatal(err)
		}
		if st.Current <= db.CitusDistributeVersion {
			break
		}
		if err := m.Down(1); err != nil {
			t.Fatalf("down from %d, above 0026: %v", st.Current, err)
		}
	}
	wantStatus(t, m, at)
	if !env.Citus {
		if err := m.Down(1); err != nil {
			t.Fatalf("down across 0026 on plain PostgreSQL: %v", err)
		}
		if err := m.Up(); err != nil {
			t.Fatalf("up again: %v", err)
		}
		wantStatus(t, m, top)
		return
	}
	for _, steps := range []int{1, 0} {
		if err := m.Down(steps); !errors.Is(err, db.ErrCitusDown) {
			t.Errorf("down %d on Citus: got %v, want ErrCitusDown", steps, err)
		}
		wantStatus(t, m, at)
	}
	if err := m.Up(); err != nil {
		t.Fatalf("up after the refusals: %v", err)
	}
	wantStatus(t, m, top)
}
