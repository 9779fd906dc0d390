package db_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/internal/testenv"
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
	name := "tenantd_test_citusdown_" + testenv.RandomHex(4)
	dbase, err := devenv.Provision(t.Context(), env.AdminURL, name)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	t.Cleanup(func() {
		if err := devenv.Drop(context.Background(), env.AdminURL, name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	m := newMigrator(t, dbase.OwnerURL)
	if err := m.Up(); err != nil {
		t.Fatal(err)
	}
	top := db.Status{Current: latest, Latest: latest}
	wantStatus(t, m, top)

	// Down to 0026 itself: never refused.
	if above := int(latest) - db.CitusDistributeVersion; above > 0 {
		if err := m.Down(above); err != nil {
			t.Fatalf("down %d, to 0026: %v", above, err)
		}
		wantStatus(t, m, db.Status{Current: db.CitusDistributeVersion, Latest: latest})
	}
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
	at := db.Status{Current: db.CitusDistributeVersion, Latest: latest}
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
