package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// holdHorizon keeps a transaction open that has appended (and so holds a
// position and the shared append lock) until the returned function is
// called, which rolls it back. While it is open no later position settles,
// so no row written after it is sealed, in any tenant.
func holdHorizon(t *testing.T, d *db.DB, tenantID uuid.UUID) (release func()) {
	t.Helper()
	held, done := make(chan struct{}), make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		done <- d.WithTenant(context.Background(), tenantID, func(tx *gorm.DB) error {
			if err := audit.Record(context.Background(), tx, tenantID, audit.Entry{Action: "horizon.held"}); err != nil {
				return err
			}
			close(held)
			<-stop
			return errRolledBack
		})
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("hold the horizon: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(stop)
			if err := <-done; !errors.Is(err, errRolledBack) {
				t.Errorf("release the horizon: got %v, want the rollback", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// TestVerifyReportsUnsealed proves `tenantd audit verify` fails on a row
// left unsealed longer than the maximum age and passes while unsealed rows
// are younger, that such rows are listed marked unsealed, and that they
// are sealed once the transaction holding the horizon back ends. It runs
// before the parallel tests: holding the horizon stops all sealing.
func TestVerifyReportsUnsealed(t *testing.T) {
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	startSealer(t)
	holder, stale, young := testenv.NewTenant(t), testenv.NewTenant(t), testenv.NewTenant(t)

	release := holdHorizon(t, app, holder.ID)
	// A row that occurred a minute ago, committed behind the open appender.
	testenv.Exec(t, app, stale.ID, `INSERT INTO audit_events (tenant_id, id, occurred_at, actor, action, resource, status)
			VALUES (?, ?, now() - interval '1 minute', 'system', 'old.unsealed', '', 0)`, stale.ID, uuid.New())
	record(t, app, actingCtx(context.Background(), young.ID, "k"), young.ID, audit.Entry{Action: "young.unsealed", Resource: "thing:1"})

	verify := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		err := audit.RunVerifyCLI(t.Context(), app, args, &out)
		return out.String(), err
	}
	tests := []struct {
		name     string
		args     []string
		wantLine string
		wantEnd  string
		wantErr  error
	}{
		{"too old", []string{"--tenant", stale.Slug},
			fmt.Sprintf("UNSEALED %s %s events=0 head=0: unsealed=1 oldest=1m", stale.ID, stale.Slug),
			"1 tenants verified, 0 broken, 1 with rows unsealed for over 10s\n", audit.ErrUnsealed},
		{"young", []string{"--tenant", young.Slug},
			fmt.Sprintf("ok      %s %s events=0 head=0: unsealed=1 oldest=", young.ID, young.Slug),
			"1 tenants verified, 0 broken\n", nil},
		{"a longer maximum age", []string{"--tenant", stale.Slug, "--max-unsealed-age", "2m"},
			fmt.Sprintf("ok      %s %s events=0 head=0: unsealed=1 oldest=1m", stale.ID, stale.Slug),
			"1 tenants verified, 0 broken\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := verify(t, tt.args...)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("got error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(out, tt.wantLine) || !strings.HasSuffix(out, tt.wantEnd) {
				t.Errorf("got output\n%s\nwant a line starting %q, ending with %q", out, tt.wantLine, tt.wantEnd)
			}
		})
	}

	t.Run("listed unsealed", func(t *testing.T) {
		evs := listAll(t, app, young.ID)
		if len(evs) != 1 || evs[0].Sealed() || evs[0].Seq != 0 || evs[0].Position == 0 {
			t.Fatalf("got %+v, want one unsealed event with a position", evs)
		}
		body, err := json.Marshal(audit.ToResponse(evs[0]))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"sealed":false`, `"seq":null`, `"prev_hash":null`, `"hash":null`, `"action":"young.unsealed"`} {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("got %s, want it to contain %s", body, want)
			}
		}
	})

	release()
	waitSealed(t, app, stale.ID)
	waitSealed(t, app, young.ID)
	for _, tn := range []testenv.Tenant{stale, young} {
		if out, err := verify(t, "--tenant", tn.Slug); err != nil || !strings.Contains(out, fmt.Sprintf("ok      %s %s events=1 head=1:", tn.ID, tn.Slug)) ||
			strings.Contains(out, "unsealed=") {
			t.Errorf("after sealing: got %v and output\n%s\nwant the chain ok with its row sealed", err, out)
		}
	}
	if n := len(events(t, app, holder.ID)); n != 0 {
		t.Errorf("got %d events of the rolled-back holder, want 0", n)
	}
}

// leaseHolders returns the backends holding the sealer's lease in the
// package's database.
func leaseHolders(t *testing.T, su *db.DB) []int32 {
	t.Helper()
	var pids []int32
	if err := su.Unscoped(t.Context()).Raw(`SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND classid = ?::oid AND objid = 0 AND objsubid = 2 AND granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		ORDER BY pid`, 0x61750002).Scan(&pids).Error; err != nil {
		t.Fatalf("read lease holders: %v", err)
	}
	return pids
}

// TestSealerLease proves that of several sealers (replicas) on one
// database exactly one holds the lease, and that when its connection dies
// another takes the lease over and sealing goes on. It runs before the
// parallel tests, which would add sealers of their own.
func TestSealerLease(t *testing.T) {
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	su := openSuperuser(t, env)
	startSealer(t)
	// One more on a pool connection, and one on a connection of its own.
	for _, leaseURL := range []string{"", env.AppURL} {
		d, err := db.Open(t.Context(), env.AppURL, db.Options{MaxConns: 3, WorkerURL: env.WorkerURL})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			audit.New(d, testenv.Logger(), audit.Options{SealInterval: sealInterval, LeaseURL: leaseURL}).RunSealer(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done; d.Close() })
	}

	var first []int32
	testenv.Eventually(t, 5*time.Second, func() (bool, string) { first = leaseHolders(t, su); return len(first) == 1, "one lease holder" })
	// The others keep trying: still one holder, many tries later.
	for range 10 {
		time.Sleep(2 * sealInterval) // the point: the others keep trying meanwhile
		if got := leaseHolders(t, su); !slices.Equal(got, first) {
			t.Fatalf("got lease holders %v, want %v alone", got, first)
		}
	}

	// The holder's replica dies: its connection ends, and the lease with it.
	var terminated bool
	if err := su.Unscoped(t.Context()).Raw("SELECT pg_terminate_backend(?)", first[0]).Scan(&terminated).Error; err != nil || !terminated {
		t.Fatalf("terminate the lease holder: %v, %v", terminated, err)
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := leaseHolders(t, su)
		return len(got) == 1 && got[0] != first[0], "another lease holder"
	})
	tn := testenv.NewTenant(t)
	record(t, app, context.Background(), tn.ID, audit.Entry{Action: "after.takeover"})
	if evs := events(t, app, tn.ID); len(evs) != 1 || evs[0].Seq != 1 {
		t.Errorf("got %+v, want one event sealed at seq 1", evs)
	}

	// Until the sealer with a lease connection of its own holds the lease,
	// end the holder's connection; then that sealer seals.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		holders := leaseHolders(t, su)
		if len(holders) != 1 {
			return false, "the lease held on its own connection"
		}
		var name string
		if err := su.Unscoped(t.Context()).Raw("SELECT application_name FROM pg_stat_activity WHERE pid = ?", holders[0]).
			Scan(&name).Error; err != nil {
			t.Fatal(err)
		}
		if name == "tenantd-audit-sealer" {
			return true, "the lease held on its own connection"
		}
		if err := su.Unscoped(t.Context()).Exec("SELECT pg_terminate_backend(?)", holders[0]).Error; err != nil {
			t.Fatal(err)
		}
		return false, "the lease held on its own connection"
	})
	record(t, app, context.Background(), tn.ID, audit.Entry{Action: "on.own.connection"})
	if evs := events(t, app, tn.ID); len(evs) != 2 || evs[1].Seq != 2 {
		t.Errorf("got %+v, want two events sealed", evs)
	}
}

// TestSealerIsolatesFailingTenant proves a tenant whose rows cannot be
// sealed for now (here a row lock held on one, so sealing it times out)
// does not hold back the sealing of other tenants, and is sealed once the
// cause is gone. It runs before the parallel tests: it holds the horizon.
func TestSealerIsolatesFailingTenant(t *testing.T) {
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	su := openSuperuser(t, env)
	startSealer(t)
	holder, stuck, other := testenv.NewTenant(t), testenv.NewTenant(t), testenv.NewTenant(t)

	release := holdHorizon(t, app, holder.ID)
	for _, tn := range []testenv.Tenant{stuck, other, stuck, other} {
		record(t, app, context.Background(), tn.ID, audit.Entry{Action: "x.written"})
	}
	lock := su.Unscoped(t.Context()).Begin()
	t.Cleanup(func() { lock.Rollback() })
	if res := lock.Exec("SELECT 1 FROM audit_events WHERE tenant_id = ? FOR UPDATE", stuck.ID); res.Error != nil || res.RowsAffected != 2 {
		t.Fatalf("lock the stuck tenant's rows: %d rows, %v", res.RowsAffected, res.Error)
	}
	release()

	waitSealed(t, app, other.ID)
	// Later rows too, while the stuck tenant's sealing keeps timing out.
	for range 2 {
		record(t, app, context.Background(), other.ID, audit.Entry{Action: "x.written"})
		waitSealed(t, app, other.ID)
	}
	if n := unsealed(t, app, stuck.ID); n != 2 {
		t.Fatalf("got %d of the locked tenant's rows unsealed, want 2", n)
	}
	if err := lock.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	waitSealed(t, app, stuck.ID)
	for tn, want := range map[testenv.Tenant]int64{stuck: 2, other: 4} {
		if r, err := audit.Verify(t.Context(), app, tn.ID); err != nil || !r.OK() || r.Events != want {
			t.Errorf("tenant %s: got report %+v, error %v; want %d events intact", tn.Slug, r, err, want)
		}
	}
}
