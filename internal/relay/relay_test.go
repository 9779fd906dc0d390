package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/relay"
	"github.com/tenantd/tenantd/internal/testenv"
)

// relayRig is one relay test's databases, its own embedded NATS server
// (stopped when the test ends, if the test has not stopped it) and names
// no other test uses.
type relayRig struct {
	app, owner *db.DB
	natsURL    string
	dir        string // the NATS server's storage
	stop       func() // stops the NATS server
	typ        string // the type of the events the test appends
	subscriber string // the relay's checkpoint
}

// newRelayRig opens the package's database with maxConns connections and
// starts an embedded NATS server for the test.
func newRelayRig(t *testing.T, maxConns int) *relayRig {
	t.Helper()
	env := testenv.Get(t)
	r := &relayRig{
		app: env.OpenDB(t, maxConns), owner: env.OpenOwnerDB(t), dir: t.TempDir(),
		typ: "relaytest." + testenv.RandomHex(4), subscriber: "relay-test-" + testenv.RandomHex(4),
	}
	var err error
	if r.natsURL, r.stop, err = relay.StartEmbedded(t.Context(), r.dir); err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(r.stop)
	return r
}

// appendEvents appends n events of typ to stream in one transaction.
func appendEvents(ctx context.Context, app *db.DB, tenantID uuid.UUID, stream, typ string, n int) ([]events.Event, error) {
	var out []events.Event
	err := app.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		evs := make([]events.NewEvent, n)
		for i := range evs {
			evs[i] = events.NewEvent{Type: typ, Data: map[string]any{"i": i, "stream": stream}}
		}
		var err error
		out, err = events.Append(ctx, tx, tenantID, stream, events.AnyVersion, evs...)
		return err
	})
	return out, err
}

// running is a relay started in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	t      testing.TB
}

func startRelay(t testing.TB, r *relay.Relay) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{cancel: cancel, done: make(chan error, 1), t: t}
	go func() { rr.done <- r.Run(ctx) }()
	t.Cleanup(rr.kill)
	return rr
}

// kill cancels the relay's context and waits for Run to return.
func (rr *running) kill() {
	rr.once.Do(func() {
		rr.cancel()
		if err := <-rr.done; err != nil {
			rr.t.Errorf("relay.Run: %v", err)
		}
	})
}

func newRelay(t testing.TB, app *db.DB, natsURL, subscriber string, reg prometheus.Registerer) *relay.Relay {
	t.Helper()
	r, err := relay.New(app, testenv.Logger(), relay.Options{URL: natsURL, Subscriber: subscriber,
		ListenURL: testenv.Get(t).AppURL, PollInterval: 50 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	return r
}

func connect(t testing.TB, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

// stored is one message read back from the stream.
type stored struct {
	seq     uint64
	subject string
	msgID   string
	body    relay.Message
	header  nats.Header
}

// readStream returns every message of the relay's stream in stream order
// (none if the stream does not exist yet).
func readStream(t testing.TB, js jetstream.JetStream) []stored {
	t.Helper()
	ctx := t.Context()
	s, err := js.Stream(ctx, relay.StreamName)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		var body relay.Message
		if err := json.Unmarshal(m.Data, &body); err != nil {
			t.Fatalf("message %d: decode body: %v", seq, err)
		}
		out = append(out, stored{seq: seq, subject: m.Subject, msgID: m.Header.Get(jetstream.MsgIDHeader), body: body, header: m.Header})
	}
	return out
}

// countOf counts the messages whose event id is in want.
func countOf(msgs []stored, want map[uuid.UUID]events.Event) int {
	n := 0
	for _, m := range msgs {
		if _, ok := want[m.body.ID]; ok {
			n++
		}
	}
	return n
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkExactlyOnceInOrder checks that every event of want is in msgs
// exactly once, on its subject, with Nats-Msg-Id = its id, that no message
// id repeats, and that each event stream's events come in version order.
func checkExactlyOnceInOrder(t testing.TB, msgs []stored, want map[uuid.UUID]events.Event) {
	t.Helper()
	seen := make(map[string]int)
	lastVersion := make(map[string]int64) // tenant/stream → version
	for _, m := range msgs {
		seen[m.msgID]++
		if seen[m.msgID] == 2 {
			t.Errorf("Nats-Msg-Id %s stored twice (second at sequence %d)", m.msgID, m.seq)
		}
		e, ok := want[m.body.ID]
		if !ok {
			continue
		}
		if m.msgID != e.ID.String() {
			t.Errorf("sequence %d: got Nats-Msg-Id %q, want %q", m.seq, m.msgID, e.ID)
		}
		if wantSubj := "tenantd." + e.TenantID.String() + "." + e.Type; m.subject != wantSubj {
			t.Errorf("sequence %d: got subject %q, want %q", m.seq, m.subject, wantSubj)
		}
		if m.body.StreamID != e.StreamID || m.body.Version != e.Version || m.body.TenantID != e.TenantID {
			t.Errorf("sequence %d: got %s v%d of %s, want %s v%d of %s", m.seq, m.body.StreamID, m.body.Version,
				m.body.TenantID, e.StreamID, e.Version, e.TenantID)
		}
		if got := m.header.Get(relay.HeaderStreamVersion); got != strconv.FormatInt(e.Version, 10) {
			t.Errorf("sequence %d: got %s %q, want %d", m.seq, relay.HeaderStreamVersion, got, e.Version)
		}
		key := e.TenantID.String() + "/" + e.StreamID
		if e.Version != lastVersion[key]+1 {
			t.Errorf("stream %s: got version %d at sequence %d after version %d, want %d", key, e.Version, m.seq,
				lastVersion[key], lastVersion[key]+1)
		}
		lastVersion[key] = e.Version
	}
	missing := 0
	for id := range want {
		if seen[id.String()] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("got %d of %d events in JetStream, %d missing", len(want)-missing, len(want), missing)
	}
}

// appendConcurrently runs writers that each append perWriter events (one or
// two per transaction) to streams of their own across tenants, pausing
// between appends, and returns every appended event once they are done.
func appendConcurrently(t testing.TB, app *db.DB, tenants []uuid.UUID, typ string, writers, perWriter int) <-chan map[uuid.UUID]events.Event {
	t.Helper()
	out := make(chan map[uuid.UUID]events.Event, 1)
	var (
		mu   sync.Mutex
		all  = make(map[uuid.UUID]events.Event)
		wg   sync.WaitGroup
		errs = make(chan error, writers)
	)
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < perWriter; {
				tenantID := tenants[(w+i)%len(tenants)]
				stream := fmt.Sprintf("relay-%d-%d", w, i%3)
				n := min(1+i%2, perWriter-i)
				evs, err := appendEvents(context.Background(), app, tenantID, stream, typ, n)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, e := range evs {
					all[e.ID] = e
				}
				mu.Unlock()
				i += n
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	go func() {
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("append: %v", err)
		}
		out <- all
	}()
	return out
}

// TestRelayKilledMidStreamPublishesEveryEventOnce kills the relay (its
// context cancelled, as a stopping process does) three times while events
// are appended concurrently, restarts it each time, and finds every event
// in JetStream exactly once, each event stream in version order.
func TestRelayKilledMidStreamPublishesEveryEventOnce(t *testing.T) {
	r := newRelayRig(t, 12)
	app, natsURL, subscriber := r.app, r.natsURL, r.subscriber
	js := connect(t, natsURL)
	tenants := []uuid.UUID{testenv.NewTenant(t).ID, testenv.NewTenant(t).ID, testenv.NewTenant(t).ID}
	typ := r.typ + ".happened"

	appended := appendConcurrently(t, app, tenants, typ, 4, 200)
	rr := startRelay(t, newRelay(t, app, natsURL, subscriber, nil))
	for kill := 1; kill <= 3; kill++ {
		// Let it publish some, then kill it while writers keep appending.
		// On a fast machine the writers may be done and everything
		// published before a later kill: then there is no more to wait for
		// (the stream is this test's own, so its count is this test's).
		before := len(readStream(t, js))
		waitFor(t, 30*time.Second, fmt.Sprintf("the relay to publish before kill %d", kill), func() bool {
			n := len(readStream(t, js))
			return n >= before+40 || n >= 4*200
		})
		rr.kill()
		time.Sleep(50 * time.Millisecond)
		rr = startRelay(t, newRelay(t, app, natsURL, subscriber, nil))
	}
	want := <-appended
	if t.Failed() {
		return
	}
	if len(want) != 4*200 {
		t.Fatalf("appended %d events, want %d", len(want), 4*200)
	}
	waitFor(t, 60*time.Second, "every event in JetStream", func() bool {
		return countOf(readStream(t, js), want) >= len(want)
	})
	rr.kill() // nothing is sent after its checkpoint passed every event
	checkExactlyOnceInOrder(t, readStream(t, js), want)
}

// TestRelayDeduplicatesEventsSentAgain loses the relay's checkpoint (as a
// crash between publishing and committing it does), so the relay sends
// every event again: JetStream drops them all by Nats-Msg-Id.
func TestRelayDeduplicatesEventsSentAgain(t *testing.T) {
	r := newRelayRig(t, 8)
	app, owner, natsURL, typ, subscriber := r.app, r.owner, r.natsURL, r.typ, r.subscriber
	js := connect(t, natsURL)
	tenantID := testenv.NewTenant(t).ID
	want := make(map[uuid.UUID]events.Event)
	for i := range 20 {
		evs, err := appendEvents(t.Context(), app, tenantID, "dedup-"+strconv.Itoa(i%4), typ, 3)
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		for _, e := range evs {
			want[e.ID] = e
		}
	}

	rr := startRelay(t, newRelay(t, app, natsURL, subscriber, nil))
	waitFor(t, 30*time.Second, "every event in JetStream", func() bool {
		return countOf(readStream(t, js), want) == len(want)
	})
	rr.kill()
	first := readStream(t, js)

	var cp int64
	if err := owner.Unscoped(t.Context()).Raw("SELECT position FROM event_checkpoints WHERE subscriber = ?", subscriber).Scan(&cp).Error; err != nil {
		t.Fatalf("read checkpoint: %v", err)
	}
	if err := owner.Unscoped(t.Context()).Exec("UPDATE event_checkpoints SET position = 0 WHERE subscriber = ?", subscriber).Error; err != nil {
		t.Fatalf("reset checkpoint: %v", err)
	}
	var resent int64
	if err := owner.Unscoped(t.Context()).Raw("SELECT count(*) FROM events WHERE position <= ?", cp).Scan(&resent).Error; err != nil {
		t.Fatalf("count events: %v", err)
	}

	reg := prometheus.NewRegistry()
	rr = startRelay(t, newRelay(t, app, natsURL, subscriber, reg))
	waitFor(t, 30*time.Second, "the relay to send everything again", func() bool {
		return counter(t, reg, "tenantd_relay_duplicates_total") >= float64(resent)
	})
	rr.kill()
	if got := counter(t, reg, "tenantd_relay_duplicates_total"); got != float64(resent) {
		t.Errorf("got %v duplicates acknowledged, want %d (every event sent again)", got, resent)
	}
	if got := counter(t, reg, "tenantd_relay_published_total"); got != 0 {
		t.Errorf("got %v events newly stored on the second run, want 0", got)
	}
	again := readStream(t, js)
	if len(again) != len(first) {
		t.Errorf("got %d messages in the stream after sending everything again, want %d", len(again), len(first))
	}
	checkExactlyOnceInOrder(t, again, want)
}

// TestRelayWaitsOutANATSOutage stops the NATS server for longer than the
// dispatcher's default retries would last, while events are appended: the
// relay parks nothing and, once NATS is back, publishes every event once,
// in order.
func TestRelayWaitsOutANATSOutage(t *testing.T) {
	r := newRelayRig(t, 8)
	app, owner, natsURL, typ, subscriber := r.app, r.owner, r.natsURL, r.typ, r.subscriber
	u, err := url.Parse(natsURL)
	if err != nil {
		t.Fatalf("NATS URL %q: %v", natsURL, err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("NATS URL %q: %v", natsURL, err)
	}
	tenantID := testenv.NewTenant(t).ID
	want := make(map[uuid.UUID]events.Event)
	appendSome := func(stream string, n int) {
		for range n {
			evs, err := appendEvents(t.Context(), app, tenantID, stream, typ, 1)
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			want[evs[0].ID] = evs[0]
		}
	}

	rr := startRelay(t, newRelay(t, app, natsURL, subscriber, nil))
	defer rr.kill()
	appendSome("outage-a", 10)
	js := connect(t, natsURL)
	waitFor(t, 30*time.Second, "the first events in JetStream", func() bool {
		return countOf(readStream(t, js), want) == len(want)
	})
	r.stop()
	appendSome("outage-a", 10)
	appendSome("outage-b", 10)
	time.Sleep(4 * time.Second) // the default 5 attempts take about 1.5s
	_, r.stop, err = relay.StartEmbeddedOn(t.Context(), r.dir, port)
	if err != nil {
		t.Fatalf("restart NATS: %v", err)
	}
	t.Cleanup(r.stop)
	js = connect(t, natsURL)
	waitFor(t, 30*time.Second, "every event in JetStream", func() bool {
		return countOf(readStream(t, js), want) == len(want)
	})
	checkExactlyOnceInOrder(t, readStream(t, js), want)
	var parked int64
	if err := owner.Unscoped(t.Context()).Raw("SELECT count(*) FROM dead_letters WHERE subscriber = ?", subscriber).Scan(&parked).Error; err != nil {
		t.Fatalf("count dead letters: %v", err)
	}
	if parked != 0 {
		t.Errorf("got %d dead letters of the relay, want 0", parked)
	}
}

// TestSubject checks subjects, including the tokens NATS would refuse.
func TestSubject(t *testing.T) {
	id := uuid.MustParse("0190a0a0-0000-7000-8000-000000000001")
	for _, tc := range []struct{ typ, want string }{
		{"order.placed", "tenantd." + id.String() + ".order.placed"},
		{"payment.succeeded", "tenantd." + id.String() + ".payment.succeeded"},
		{"odd type.*.>", "tenantd." + id.String() + ".odd_type._._"},
		{"a..b.", "tenantd." + id.String() + ".a._.b._"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			if got := relay.Subject(id, tc.typ); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// counter reads a counter's value from reg.
func counter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
