//go:build citus

package citus_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/inventory"
	"github.com/tenantd/tenantd/orders"
)

// statement is one statement as the application sent it, with its
// arguments.
type statement struct {
	SQL  string
	Args []any
}

// recorder keeps the statements sent through a pool's GORM sessions whose
// context carries phaseKey, by phase; the pool's background work (the
// dispatcher, the sealer) has no phase and is left out.
type recorder struct {
	mu   sync.Mutex
	sent map[string][]statement
}

type phaseKey struct{}

// inPhase marks ctx's statements as phase's.
func inPhase(ctx context.Context, phase string) context.Context {
	return context.WithValue(ctx, phaseKey{}, phase)
}

// record registers the recorder on d's GORM callbacks: after every create,
// query, update, delete, row and raw statement.
func (r *recorder) record(t testing.TB, d *db.DB) {
	t.Helper()
	r.sent = map[string][]statement{}
	g := d.Unscoped(context.Background())
	cb := g.Callback()
	name := "citus:router_test"
	for kind, err := range map[string]error{
		"create": cb.Create().After("*").Register(name, r.add),
		"query":  cb.Query().After("*").Register(name, r.add),
		"update": cb.Update().After("*").Register(name, r.add),
		"delete": cb.Delete().After("*").Register(name, r.add),
		"row":    cb.Row().After("*").Register(name, r.add),
		"raw":    cb.Raw().After("*").Register(name, r.add),
	} {
		if err != nil {
			t.Fatalf("register %s callback: %v", kind, err)
		}
	}
}

func (r *recorder) add(g *gorm.DB) {
	phase, ok := g.Statement.Context.Value(phaseKey{}).(string)
	if !ok || g.Statement.SQL.Len() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent[phase] = append(r.sent[phase], statement{SQL: g.Statement.SQL.String(), Args: append([]any(nil), g.Statement.Vars...)})
}

// take returns and forgets phase's statements.
func (r *recorder) take(phase string) []statement {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sent[phase]
	delete(r.sent, phase)
	return out
}

// explain returns the plan of s on the coordinator, as the runtime role
// bound to tenantID, in a transaction rolled back afterwards (EXPLAIN of
// an INSERT still evaluates its VALUES' functions on the coordinator).
func explain(ctx context.Context, conn *pgx.Conn, tenantID uuid.UUID, s statement) (string, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT app_bind_tenant($1)", tenantID); err != nil {
		return "", fmt.Errorf("bind: %w", err)
	}
	rows, err := tx.Query(ctx, "EXPLAIN (COSTS OFF) "+s.SQL, s.Args...)
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	return strings.Join(lines, "\n"), nil
}

// TestRouterPlans proves that the statements tenantd sends to place an
// order (inventory's reservation, the order's events, its read model), to
// read products, to read the event feed, to read an order's events and to
// cancel an order (an order transition: its locked read model, its stream,
// the appended events, the released stock) each go to one shard: captured
// from the services as they run on the cluster, then EXPLAINed there.
func TestRouterPlans(t *testing.T) {
	rec := &recorder{}
	var pool *db.DB
	s := apptest.New(t, apptest.Options{OnDB: func(d *db.DB) { pool = d; rec.record(t, d) }})
	env := testenv.Get(t)
	if !env.Citus {
		t.Fatal("the package's database is not on Citus")
	}
	admin := connect(t, env.AdminDBURL())
	distributed := map[string]bool{}
	for _, dt := range distributedTables(t, admin) {
		distributed[dt.Name] = true
	}
	sh := newShop(t, s, "router", 100, 250)
	tenantID, productID := uuid.MustParse(sh.tenant.ID), uuid.MustParse(sh.product)
	ctx := t.Context()

	placed, err := s.App.Orders.Place(inPhase(ctx, "place an order"), tenantID, orders.NewOrder{
		CustomerID: "cust-router", Items: []orders.NewItem{{ProductID: productID, Quantity: 2}},
	})
	if err != nil {
		t.Fatalf("place order: %v", err)
	}
	if _, err := s.App.Inventory.Get(inPhase(ctx, "read products"), tenantID, productID); err != nil {
		t.Fatalf("get product: %v", err)
	}
	if _, err := s.App.Inventory.List(inPhase(ctx, "read products"), tenantID, inventory.ListQuery{Limit: 10}); err != nil {
		t.Fatalf("list products: %v", err)
	}
	feed := events.NewFeed(pool)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		rec.take("read the event feed") // only the read that returns the order's events
		got, err := feed.Read(inPhase(ctx, "read the event feed"), tenantID, 0, 100, nil)
		if err != nil {
			t.Fatalf("read feed: %v", err)
		}
		return int64(len(got)) >= placed.Version, fmt.Sprintf("the feed has the order's %d events (got %d)", placed.Version, len(got))
	})

	if _, err := s.App.Orders.Events(inPhase(ctx, "read an order's events"), tenantID, placed.ID); err != nil {
		t.Fatalf("read the order's events: %v", err)
	}
	if _, err := s.App.Orders.Cancel(inPhase(ctx, "cancel an order"), tenantID, placed.ID); err != nil {
		t.Fatalf("cancel the order: %v", err)
	}

	conn := connect(t, env.AppURL)
	wants := map[string][]string{ // statements each phase must have sent
		"place an order":         {`FROM products`, `INSERT INTO reservations`, `INSERT INTO events`, `INSERT INTO "order_views"`},
		"read products":          {`FROM "products"`},
		"read the event feed":    {`FROM events WHERE tenant_id`},
		"read an order's events": {`FROM events WHERE tenant_id`},
		"cancel an order":        {`FROM "order_views"`, `FROM events WHERE tenant_id`, `INSERT INTO events`},
	}
	for _, phase := range []string{"place an order", "read products", "read the event feed", "read an order's events", "cancel an order"} {
		t.Run(phase, func(t *testing.T) {
			sent := rec.take(phase)
			for _, want := range wants[phase] {
				if !containsSQL(sent, want) {
					t.Errorf("no statement with %q among the %d sent: %v", want, len(sent), sent)
				}
			}
			for _, st := range sent {
				plan, err := explain(ctx, conn, tenantID, st)
				if err != nil {
					t.Errorf("explain %s: %v", st.SQL, err)
					continue
				}
				t.Logf("%s\n%s", st.SQL, plan)
				checkRouted(t, st, plan, distributed)
			}
		})
	}
}

// containsSQL reports whether one of sent contains fragment.
func containsSQL(sent []statement, fragment string) bool {
	for _, s := range sent {
		if strings.Contains(s.SQL, fragment) {
			return true
		}
	}
	return false
}

// checkRouted fails t unless plan is a single-task Citus plan, or s names
// no distributed table (a sequence, pg_locks: the coordinator's own).
func checkRouted(t *testing.T, s statement, plan string, distributed map[string]bool) {
	t.Helper()
	if strings.Contains(plan, "Custom Scan (Citus") {
		if !strings.Contains(plan, "Task Count: 1\n") {
			t.Errorf("not a router plan (want Task Count: 1):\n%s\nplan:\n%s", s.SQL, plan)
		}
		return
	}
	for _, name := range tableNames.FindAllStringSubmatch(s.SQL, -1) {
		if distributed[name[1]] {
			t.Errorf("%s names distributed table %s but its plan is not Citus's:\n%s", s.SQL, name[1], plan)
		}
	}
}

// tableNames finds the names after FROM, JOIN, INTO and UPDATE.
var tableNames = regexp.MustCompile(`(?i)\b(?:from|join|into|update)\s+"?([a-z_][a-z0-9_]*)"?`)

// TestEventsOnCoordinator proves the event positions stay where the
// dispatcher looks for them on Citus (migration 0025): drawn from the
// coordinator's events_position_seq, notified on the coordinator's
// channel at commit, and passed by the settled horizon.
func TestEventsOnCoordinator(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	app := env.OpenDB(t, 2)
	tenantID := testenv.NewTenant(t).ID
	listener := connect(t, env.AppURL)
	if _, err := listener.Exec(ctx, "LISTEN tenantd_events"); err != nil {
		t.Fatal(err)
	}
	lastValue := func() int64 {
		t.Helper()
		var v int64
		if err := app.Unscoped(ctx).Raw("SELECT last_value FROM events_position_seq").Scan(&v).Error; err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := lastValue()
	var appended []events.Event
	err := app.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
		appended, err = events.Append(ctx, tx, tenantID, "coord-"+testenv.RandomHex(4), 0,
			events.NewEvent{Type: "test.one", Data: 1}, events.NewEvent{Type: "test.two", Data: 2})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	after := lastValue()
	for _, e := range appended {
		if e.Position <= before || e.Position > after {
			t.Errorf("event at position %d, want one drawn from the coordinator's sequence (%d, %d]", e.Position, before, after)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, err := listener.WaitForNotification(wctx); err != nil {
		t.Errorf("no notification on the coordinator: %v", err)
	} else if n.Channel != "tenantd_events" {
		t.Errorf("got a notification on %q, want tenantd_events", n.Channel)
	}
	hz := events.NewHorizon(app)
	last := appended[len(appended)-1].Position
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		settled, err := hz.Settled(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return settled >= last, fmt.Sprintf("horizon %d passes the last event's position %d", settled, last)
	})
}
