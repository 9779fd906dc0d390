package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestRestartMidStream kills a dispatcher (cancels its context) halfway
// through 500 events over 3 tenants and 20 streams and starts a new one:
// every event has exactly one effect, and each stream's effects are in
// version order.
func TestRestartMidStream(t *testing.T) {
	t.Parallel()
	rig := newDispatchRig(t, 6, newTenants(t, 3), 20, 500, "restart")
	var calls atomic.Int64
	slow := func(h events.Handler) events.Handler {
		return func(ctx context.Context, tx *gorm.DB, e events.Event) error {
			time.Sleep(time.Millisecond) // give the kill a stream to cut into
			return h(ctx, tx, e)
		}
	}
	opts := events.Options{PollInterval: 50 * time.Millisecond, BatchSize: 37}

	first := events.NewDispatcher(rig.app, testLogger(), opts)
	first.Subscribe(rig.sub, []string{rig.typ}, slow(rig.fx.handler("first", &calls)))
	stop := start(t, first)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) { return rig.fx.count(t) >= 250, "half the events handled" })
	stop()
	killedAt := rig.fx.count(t)
	if killedAt >= len(rig.appended) {
		t.Fatalf("got all %d events handled before the kill, want the kill mid-stream", killedAt)
	}

	second := events.NewDispatcher(rig.app, testLogger(), opts)
	second.Subscribe(rig.sub, []string{rig.typ}, slow(rig.fx.handler("second", &calls)))
	stop = start(t, second)
	rig.waitAllHandled(t)
	stop()

	byReplica := rig.checkByReplica(t)
	// A COMMIT in flight when the first dispatcher's context was cancelled
	// may still land after stop returned (its outcome was unknown to the
	// client), so the first may own a few more effects than counted at the
	// kill; exactly-once above is what matters.
	if byReplica["first"] < killedAt || byReplica["second"] == 0 || byReplica["first"]+byReplica["second"] != len(rig.appended) {
		t.Errorf("got effects per dispatcher %v, want first ≥ %d, the rest by second", byReplica, killedAt)
	}
	if n := calls.Load(); n < int64(len(rig.appended)) {
		t.Errorf("got %d handler calls, want at least %d", n, len(rig.appended))
	}
	t.Logf("killed after %d effects; %d handler calls for %d events", killedAt, calls.Load(), len(rig.appended))
}

// TestReplicas runs two replicas' dispatchers (separate pools) with the same
// subscriber, kills one mid-stream, and checks every event still has exactly
// one effect, in stream order, and that the survivor took over.
func TestReplicas(t *testing.T) {
	t.Parallel()
	rig := newDispatchRig(t, 4, newTenants(t, 3), 20, 300, "replicas")
	appB := testenv.Get(t).OpenDB(t, 4)
	opts := events.Options{PollInterval: 30 * time.Millisecond, BatchSize: 50}

	var calls atomic.Int64
	replicas := map[string]*events.Dispatcher{
		"a": events.NewDispatcher(rig.app, testLogger(), opts),
		"b": events.NewDispatcher(appB, testLogger(), opts),
	}
	stops := map[string]func(){}
	for name, d := range replicas {
		d.Subscribe(rig.sub, []string{rig.typ}, func(ctx context.Context, tx *gorm.DB, e events.Event) error {
			time.Sleep(time.Millisecond) // the point: a slow handler, so a leader change interrupts work
			return rig.fx.handler(name, &calls)(ctx, tx, e)
		})
		stops[name] = start(t, d)
	}
	var leader string
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		got := rig.fx.all(t)
		if len(got) < 100 {
			return false, "a third of the events handled"
		}
		leader = got[len(got)-1].Replica
		return true, "a third of the events handled"
	})
	stops[leader]()
	rig.waitAllHandled(t)
	for _, stop := range stops {
		stop()
	}

	byReplica := rig.checkByReplica(t)
	if len(byReplica) != 2 {
		t.Errorf("got effects per replica %v, want both replicas to have handled events (the survivor takes over)", byReplica)
	}
}

// TestCheckpointClaim runs two workers for one subscriber without the
// advisory-lock lease (as after a lease connection broke): the checkpoint
// row they both lock still lets only one of them commit each event.
func TestCheckpointClaim(t *testing.T) {
	t.Parallel()
	rig := newDispatchRig(t, 4, newTenants(t, 2), 10, 200, "claim")
	appB := testenv.Get(t).OpenDB(t, 4)
	opts := events.Options{PollInterval: 20 * time.Millisecond, BatchSize: 20, Backoff: func(int) time.Duration { return time.Millisecond }}
	var calls atomic.Int64
	for _, r := range []struct {
		name string
		d    *events.Dispatcher
	}{{"a", events.NewDispatcher(rig.app, testLogger(), opts)}, {"b", events.NewDispatcher(appB, testLogger(), opts)}} {
		r.d.Subscribe(rig.sub, []string{rig.typ}, rig.fx.handler(r.name, &calls))
		startFunc(t, r.d.RunWithoutLeases)
	}
	rig.waitAllHandled(t)
	checkExactlyOnce(t, rig.fx.all(t), rig.appended)
	t.Logf("%d handler calls for %d events", calls.Load(), len(rig.appended))
}

// TestPoisonEvent proves a handler that keeps failing on one event retries
// it MaxAttempts times with backoff, parks it as a dead letter visible to
// its tenant only, goes on with the later events, and that Replay re-runs
// it: a failing replay keeps the dead letter, a succeeding one removes it
// and applies the effect.
func TestPoisonEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fail    func(e events.Event) error
		wantErr string
	}{
		{"error", func(e events.Event) error { return fmt.Errorf("cannot handle %s", e.ID) }, "cannot handle"},
		{"panic", func(e events.Event) error { panic("handler bug") }, "handler panicked: handler bug"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			a, b := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
			rig := newDispatchRig(t, 4, []uuid.UUID{a}, 1, 10, "poison")
			poison := rig.appended[3]

			const maxAttempts = 3
			var (
				broken     atomic.Bool
				poisonRuns atomic.Int64
				mu         sync.Mutex
				backoffs   []int
			)
			broken.Store(true)
			d := events.NewDispatcher(rig.app, testLogger(), events.Options{
				PollInterval: 20 * time.Millisecond,
				MaxAttempts:  maxAttempts,
				Backoff: func(attempt int) time.Duration {
					mu.Lock()
					defer mu.Unlock()
					backoffs = append(backoffs, attempt)
					return time.Millisecond
				},
			})
			d.Subscribe(rig.sub, []string{rig.typ}, func(ctx context.Context, tx *gorm.DB, e events.Event) error {
				if err := rig.fx.record(tx, e, "handler"); err != nil {
					return err
				}
				if e.ID == poison.ID {
					poisonRuns.Add(1)
					if broken.Load() {
						return tt.fail(e)
					}
				}
				return nil
			})
			stop := start(t, d)
			testenv.Eventually(t, 20*time.Second, func() (bool, string) { return rig.fx.count(t) >= len(rig.appended)-1, "the later events handled" })
			stop()

			got := rig.fx.all(t)
			checkExactlyOnce(t, got, slices.Delete(slices.Clone(rig.appended), 3, 4))
			if n := poisonRuns.Load(); n != maxAttempts {
				t.Errorf("got %d attempts on the poison event, want %d", n, maxAttempts)
			}
			mu.Lock()
			if want := []int{1, 2}; !slices.Equal(backoffs, want) {
				t.Errorf("got backoff calls %v, want %v", backoffs, want)
			}
			mu.Unlock()

			dls, err := d.DeadLetters(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) != 1 {
				t.Fatalf("got %d dead letters, want 1: %+v", len(dls), dls)
			}
			dl := dls[0]
			if dl.Event.ID != poison.ID || dl.Subscriber != rig.sub || dl.Attempts != maxAttempts || dl.TenantID != a ||
				!strings.Contains(dl.Error, tt.wantErr) || !sameJSON(t, dl.Event.Data, poison.Data) {
				t.Errorf("got dead letter %+v, want event %s of %s after %d attempts with error %q",
					dl, poison.ID, rig.sub, maxAttempts, tt.wantErr)
			}
			if other, err := d.DeadLetters(ctx, b); err != nil || len(other) != 0 {
				t.Errorf("got %v, %v as another tenant's dead letters, want none", other, err)
			}
			if err := d.Replay(ctx, b, dl.ID); !errors.Is(err, events.ErrDeadLetterNotFound) {
				t.Errorf("got %v replaying as another tenant, want ErrDeadLetterNotFound", err)
			}

			// Still broken: the replay fails and the dead letter stays.
			if err := d.Replay(ctx, a, dl.ID); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v from a failing replay, want the handler's error", err)
			}
			dls, err = d.DeadLetters(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) != 1 || dls[0].Attempts != maxAttempts+1 {
				t.Fatalf("got dead letters %+v after a failing replay, want one with %d attempts", dls, maxAttempts+1)
			}
			if n := rig.fx.count(t); n != len(rig.appended)-1 {
				t.Errorf("got %d effects after a failing replay, want %d (its effect rolled back)", n, len(rig.appended)-1)
			}

			// Fixed: the replay applies the effect and removes the dead letter.
			broken.Store(false)
			if err := d.Replay(ctx, a, dl.ID); err != nil {
				t.Fatalf("replay: %v", err)
			}
			dls, err = d.DeadLetters(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) != 0 {
				t.Errorf("got dead letters %+v after a successful replay, want none", dls)
			}
			byID := map[uuid.UUID]int{}
			for _, g := range rig.fx.all(t) {
				byID[g.EventID]++
			}
			for _, e := range rig.appended {
				if byID[e.ID] != 1 {
					t.Errorf("event v%d: got %d effects, want 1", e.Version, byID[e.ID])
				}
			}
			if err := d.Replay(ctx, a, dl.ID); !errors.Is(err, events.ErrDeadLetterNotFound) {
				t.Errorf("got %v replaying again, want ErrDeadLetterNotFound", err)
			}
		})
	}
}

// TestListenWakes proves a notification delivers an append long before
// the poll interval would.
func TestListenWakes(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 4)
	handled := make(chan uuid.UUID, 10)
	d := events.NewDispatcher(app, testLogger(), events.Options{PollInterval: 10 * time.Second, ListenURL: testenv.Get(t).AppURL})
	d.Subscribe("listen-"+testenv.RandomHex(4), []string{typ}, func(_ context.Context, _ *gorm.DB, e events.Event) error {
		handled <- e.ID
		return nil
	})
	start(t, d)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		var n int64
		if err := app.Unscoped(t.Context()).Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'tenantd-events-listener' AND query ILIKE 'LISTEN%' AND datname = current_database()`).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n > 0, "the dispatcher to LISTEN"
	})
	time.Sleep(100 * time.Millisecond) // let the initial pass settle into its 10s wait

	for i := range 3 {
		began := time.Now()
		e := appendOne(t, app, a, "listen", int64(i), typ, i)
		select {
		case id := <-handled:
			if id != e.ID {
				t.Fatalf("got event %s handled, want %s", id, e.ID)
			}
			if took := time.Since(began); took > time.Second {
				t.Errorf("append %d: got delivery after %s, want under 1s (poll interval 10s)", i, took)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("append %d: not delivered within 2s, want a notification to wake the dispatcher", i)
		}
	}
}

// TestHandlerContext proves a handler's appends record the handled event as
// their cause and the subscriber as the actor.
func TestHandlerContext(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 4)
	sub := "reactor-" + testenv.RandomHex(4)
	d := events.NewDispatcher(app, testLogger(), events.Options{PollInterval: 20 * time.Millisecond})
	d.Subscribe(sub, []string{typ}, func(ctx context.Context, tx *gorm.DB, e events.Event) error {
		_, err := events.Append(ctx, tx, e.TenantID, "reaction", events.AnyVersion, events.NewEvent{Type: typ + ".reaction", Data: nil})
		return err
	})
	start(t, d)
	cause := appendOne(t, app, a, "cause", 0, typ, "x")
	var reaction []events.Event
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		inTenant(t, app, a, func(tx *gorm.DB) error {
			var err error
			reaction, err = events.Load(t.Context(), tx, a, "reaction")
			return err
		})
		return len(reaction) > 0, "the reaction"
	})
	want := events.Metadata{Actor: "subscriber:" + sub, CausationID: cause.ID.String(), CorrelationID: cause.ID.String()}
	if got := reaction[0].Metadata; got != want {
		t.Errorf("got metadata %+v, want %+v", got, want)
	}
}

// TestLag proves Lag reports the age of the oldest unhandled event, and
// zero once the subscriber caught up.
func TestLag(t *testing.T) {
	t.Parallel()
	app, a, typ := newTenantLog(t, 4)
	sub := "lag-" + testenv.RandomHex(4)
	var calls atomic.Int64
	d := events.NewDispatcher(app, testLogger(), events.Options{PollInterval: 20 * time.Millisecond})
	d.Subscribe(sub, []string{typ}, func(context.Context, *gorm.DB, events.Event) error { calls.Add(1); return nil })
	appendOne(t, app, a, "lag", 0, typ, 1)
	time.Sleep(150 * time.Millisecond) // the point: the unhandled event ages

	lag, err := d.Lag(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if lag[sub] < 150*time.Millisecond || lag[sub] > time.Minute {
		t.Errorf("got lag %s before running, want at least 150ms", lag[sub])
	}
	start(t, d)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { return calls.Load() == 1, "the event handled" })
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		lag, err := d.Lag(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return lag[sub] == 0, "lag zero"
	})
}

// TestDefaultBackoff proves the default pauses grow from about 100ms to at
// most 5s, with jitter.
func TestDefaultBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{7, 2500 * time.Millisecond, 5 * time.Second},
		{1000, 2500 * time.Millisecond, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.attempt), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 50 {
				d := events.DefaultBackoff(tt.attempt)
				if d < tt.min || d > tt.max {
					t.Fatalf("got %s, want within [%s, %s]", d, tt.min, tt.max)
				}
				seen[d] = true
			}
			if len(seen) < 2 {
				t.Errorf("got %d distinct pauses in 50 draws, want jitter", len(seen))
			}
		})
	}
}

// sameJSON reports whether a and b encode the same value (jsonb does not
// keep the original spacing).
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}
