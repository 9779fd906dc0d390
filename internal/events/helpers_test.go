package events_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
)

// eventType returns an event type no other test uses, so that a test's
// subscribers see only its own events of the shared log.
func eventType(t testing.TB) string { return "test." + testenv.RandomHex(6) }

// sqlState is db.SQLState, by the name the package's tests call it.
var sqlState = db.SQLState

// testLogger is the dispatchers' logger (testenv.Logger).
var testLogger = testenv.Logger

// appendOne appends one event in its own transaction.
func appendOne(t testing.TB, app *db.DB, tenantID uuid.UUID, stream string, expected int64, typ string, data any) events.Event {
	t.Helper()
	var out []events.Event
	err := app.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error {
		var err error
		out, err = events.Append(t.Context(), tx, tenantID, stream, expected, events.NewEvent{Type: typ, Data: data})
		return err
	})
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return out[0]
}

// inTenant runs fn in a transaction of tenantID on app and fails t if it
// returns an error.
func inTenant(t testing.TB, app *db.DB, tenantID uuid.UUID, fn func(tx *gorm.DB) error) {
	t.Helper()
	if err := app.WithTenant(t.Context(), tenantID, fn); err != nil {
		t.Fatalf("transaction of tenant %s: %v", tenantID, err)
	}
}

// TestInTenant proves the helper runs fn in a transaction bound to the
// tenant (row-level security admits the tenant's append) and commits it.
func TestInTenant(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 2)
	inTenant(t, app, a, func(tx *gorm.DB) error {
		_, err := events.Append(t.Context(), tx, a, "in-tenant", 0, events.NewEvent{Type: typ, Data: 1})
		return err
	})
	var n int
	if err := app.WithTenant(t.Context(), a, func(tx *gorm.DB) error {
		es, err := events.Load(t.Context(), tx, a, "in-tenant")
		n = len(es)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("got %d events in the tenant's stream, want the one appended", n)
	}
}

// seed appends n events of typ, one transaction each, round robin over
// streams stream streams spread over tenants; it returns them in append
// order.
func seed(t testing.TB, app *db.DB, tenants []uuid.UUID, streams, n int, typ string) []events.Event {
	t.Helper()
	versions := make([]int64, streams)
	out := make([]events.Event, 0, n)
	for i := range n {
		k := i % streams
		e := appendOne(t, app, tenants[k%len(tenants)], fmt.Sprintf("stream-%d", k), versions[k], typ, map[string]int{"i": i})
		versions[k]++
		out = append(out, e)
	}
	return out
}

// newTenants creates n tenants and returns their ids.
func newTenants(t testing.TB, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = testenv.NewTenant(t).ID
	}
	return ids
}

// newTenantLog opens a runtime pool of maxConns connections on the
// package's database and returns it with a new tenant and an event type of
// the test's own.
func newTenantLog(t testing.TB, maxConns int) (app *db.DB, tenantID uuid.UUID, typ string) {
	t.Helper()
	return testenv.Get(t).OpenDB(t, maxConns), testenv.NewTenant(t).ID, eventType(t)
}

// dispatchRig is a dispatcher test's pools, the events seeded for it, the
// table its handlers record their effects in, and a subscriber of its own.
type dispatchRig struct {
	owner, app *db.DB
	typ        string         // the seeded events' type, the test's own
	appended   []events.Event // the seeded events, in append order
	fx         *effects
	sub        string
}

// newDispatchRig opens an owner pool and a runtime pool of maxConns
// connections, seeds n events over streams streams of tenants (see seed)
// and names the subscriber subPrefix and random hex digits.
func newDispatchRig(t testing.TB, maxConns int, tenants []uuid.UUID, streams, n int, subPrefix string) dispatchRig {
	t.Helper()
	env := testenv.Get(t)
	r := dispatchRig{owner: env.OpenOwnerDB(t), app: env.OpenDB(t, maxConns), typ: eventType(t)}
	r.appended = seed(t, r.app, tenants, streams, n, r.typ)
	r.fx = newEffects(t, r.owner)
	r.sub = subPrefix + "-" + testenv.RandomHex(4)
	return r
}

// waitAllHandled waits until every seeded event has an effect, then a
// little longer, for a duplicate to show.
func (r dispatchRig) waitAllHandled(t testing.TB) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() (bool, string) { return r.fx.count(t) >= len(r.appended), "all events handled" })
	time.Sleep(200 * time.Millisecond) // room for a duplicate to show
}

// checkByReplica checks that every seeded event has exactly one effect,
// each stream's in version order (see checkExactlyOnce), and returns how
// many effects each replica made.
func (r dispatchRig) checkByReplica(t testing.TB) map[string]int {
	t.Helper()
	got := r.fx.all(t)
	checkExactlyOnce(t, got, r.appended)
	byReplica := map[string]int{}
	for _, g := range got {
		byReplica[g.Replica]++
	}
	return byReplica
}

// effects is a table the test handlers write their side effects to, one row
// per handled event, in the handler's transaction. Under row-level security
// like a tenant table, so a handler whose transaction had the wrong tenant
// could not write it. The owner reads past it (no FORCE).
type effects struct {
	owner *db.DB
	name  string
}

func newEffects(t testing.TB, owner *db.DB) *effects {
	t.Helper()
	name := "effects_" + testenv.RandomHex(6)
	for _, q := range []string{
		`CREATE TABLE ` + name + ` (seq bigserial PRIMARY KEY, tenant_id uuid NOT NULL, event_id uuid NOT NULL,
			stream_id text NOT NULL, version bigint NOT NULL, replica text NOT NULL)`,
		`ALTER TABLE ` + name + ` ENABLE ROW LEVEL SECURITY`,
		`CREATE POLICY tenant_isolation ON ` + name + `
			USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
			WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))`,
		`GRANT SELECT, INSERT ON ` + name + ` TO tenantd_app`,
		`GRANT USAGE ON SEQUENCE ` + name + `_seq_seq TO tenantd_app`,
	} {
		if err := owner.Unscoped(t.Context()).Exec(q).Error; err != nil {
			t.Fatalf("create effects table: %v", err)
		}
	}
	return &effects{owner: owner, name: name}
}

// record writes e's effect in tx.
func (f *effects) record(tx *gorm.DB, e events.Event, replica string) error {
	return tx.Exec(`INSERT INTO `+f.name+` (tenant_id, event_id, stream_id, version, replica) VALUES (?, ?, ?, ?, ?)`,
		e.TenantID, e.ID, e.StreamID, e.Version, replica).Error
}

// effect is one row of an effects table.
type effect struct {
	Seq      int64
	TenantID uuid.UUID
	EventID  uuid.UUID
	StreamID string
	Version  int64
	Replica  string
}

func (f *effects) all(t testing.TB) []effect {
	t.Helper()
	var rows []effect
	if err := f.owner.Unscoped(context.Background()).Raw(`SELECT seq, tenant_id, event_id, stream_id, version, replica
		FROM ` + f.name + ` ORDER BY seq`).Scan(&rows).Error; err != nil {
		t.Fatalf("read effects: %v", err)
	}
	return rows
}

func (f *effects) count(t testing.TB) int {
	t.Helper()
	var n int64
	if err := f.owner.Unscoped(context.Background()).Raw(`SELECT count(*) FROM ` + f.name).Scan(&n).Error; err != nil {
		t.Fatalf("count effects: %v", err)
	}
	return int(n)
}

// handler returns a handler that records each event's effect, counting its
// calls in calls (nil for none).
func (f *effects) handler(replica string, calls *atomic.Int64) events.Handler {
	return func(ctx context.Context, tx *gorm.DB, e events.Event) error {
		if calls != nil {
			calls.Add(1)
		}
		return f.record(tx, e, replica)
	}
}

// checkExactlyOnce fails t unless every event in want has exactly one
// effect, there are no others, and within each stream the effects follow
// version order.
func checkExactlyOnce(t testing.TB, got []effect, want []events.Event) {
	t.Helper()
	byID := make(map[uuid.UUID]int, len(got))
	for _, g := range got {
		byID[g.EventID]++
	}
	for _, e := range want {
		if n := byID[e.ID]; n != 1 {
			t.Errorf("event %s (%s v%d): got %d effects, want 1", e.ID, e.StreamID, e.Version, n)
		}
		delete(byID, e.ID)
	}
	for id, n := range byID {
		t.Errorf("got %d effects of unexpected event %s, want none", n, id)
	}
	type key struct {
		tenant uuid.UUID
		stream string
	}
	last := map[key]int64{}
	for _, g := range got {
		k := key{g.TenantID, g.StreamID}
		if g.Version <= last[k] {
			t.Errorf("stream %s: got version %d after %d, want increasing versions", g.StreamID, g.Version, last[k])
		}
		last[k] = g.Version
	}
}

// start runs d until the returned stop is called (or the test ends) and
// checks Run returns nil promptly.
func start(t testing.TB, d *events.Dispatcher) (stop func()) {
	t.Helper()
	return startFunc(t, d.Run)
}

func startFunc(t testing.TB, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("got Run error %v, want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return within 15s of its context ending")
		}
	}
	t.Cleanup(stop)
	return stop
}

// checkpoint reads subscriber's checkpoint (0 when it has none).
func checkpoint(t testing.TB, owner *db.DB, subscriber string) int64 {
	t.Helper()
	var ps []int64
	if err := owner.Unscoped(context.Background()).Raw("SELECT position FROM event_checkpoints WHERE subscriber = ?",
		subscriber).Scan(&ps).Error; err != nil {
		t.Fatalf("read checkpoint: %v", err)
	}
	if len(ps) == 0 {
		return 0
	}
	return ps[0]
}
