package webhooks_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/webhooks"
)

// received is one request a receiver got.
type received struct {
	Header http.Header
	Body   []byte
}

// receiver is a real HTTP server that records what it is sent and
// answers with answer (200 by default).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(w http.ResponseWriter, r *http.Request, body []byte)
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, body []byte)) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.got = append(rc.got, received{Header: r.Header.Clone(), Body: body})
		rc.mu.Unlock()
		if rc.answer != nil {
			rc.answer(w, r, body)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func status(code int) func(w http.ResponseWriter, r *http.Request, body []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(code) }
}

// rig is a webhook service on the package's database with a fake clock.
type rig struct {
	svc    *webhooks.Service
	app    *db.DB
	owner  *db.DB
	clock  *testenv.Clock
	tenant uuid.UUID
	start  func()
}

// newRig wires a Service (not running until start) for a new tenant. The
// tests of this package run one at a time: the workers find due
// deliveries of every tenant, so each test removes its endpoints (and with
// them their deliveries) when it ends.
func newRig(t *testing.T, edit func(*webhooks.Options)) *rig {
	t.Helper()
	env := testenv.Get(t)
	r := &rig{app: env.OpenDB(t, 8), owner: env.OpenOwnerDB(t), clock: testenv.NewClock(time.Now().UTC().Truncate(time.Second))}
	r.tenant = testenv.NewTenant(t).ID
	opts := webhooks.Options{AllowPrivate: true, Now: r.clock.Now, Jitter: func() float64 { return 0.5 },
		PollInterval: 20 * time.Millisecond, BreakerFailures: 1000, Timeout: 5 * time.Second}
	if edit != nil {
		edit(&opts)
	}
	svc, err := webhooks.NewService(r.app, testenv.Logger(), opts)
	if err != nil {
		t.Fatalf("new service: %v", err)
	}
	r.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	started := false
	r.start = func() {
		started = true
		go func() { defer close(done); svc.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		if started {
			<-done
		}
		err := r.owner.WithTenant(context.Background(), r.tenant, func(tx *gorm.DB) error {
			return tx.Exec(`DELETE FROM webhook_endpoints WHERE tenant_id = ?`, r.tenant).Error
		})
		if err != nil {
			t.Errorf("remove endpoints: %v", err)
		}
	})
	return r
}

// appendEvent appends one event of type typ with data to a new stream
// streamID of the rig's tenant, as the runtime role, and returns it.
func (r *rig) appendEvent(t *testing.T, streamID, typ string, data any) events.Event {
	t.Helper()
	var ev events.Event
	err := r.app.WithTenant(t.Context(), r.tenant, func(tx *gorm.DB) error {
		evs, err := events.Append(t.Context(), tx, r.tenant, streamID, 0, events.NewEvent{Type: typ, Data: data})
		if err == nil {
			ev = evs[0]
		}
		return err
	})
	if err != nil {
		t.Fatalf("append %s to %s: %v", typ, streamID, err)
	}
	return ev
}

func (r *rig) create(t *testing.T, url string, types ...string) (webhooks.Endpoint, string) {
	t.Helper()
	if len(types) == 0 {
		types = []string{"*"}
	}
	ep, secret, err := r.svc.Create(t.Context(), r.tenant, webhooks.NewEndpoint{URL: url, EventTypes: types})
	if err != nil {
		t.Fatalf("create endpoint: %v", err)
	}
	return ep, secret
}

// dispatch runs an event dispatcher on the rig's database that feeds the
// service, until the test ends.
func (r *rig) dispatch(t *testing.T) {
	t.Helper()
	d := events.NewDispatcher(r.app, testenv.Logger(), events.Options{PollInterval: 20 * time.Millisecond})
	r.svc.Subscribe(d)
	ctx, cancel := contextWithCancel(t)
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// endpointTo creates an endpoint for every event type whose receiver
// answers with answer (200 when nil), and returns the receiver, the
// endpoint and its signing secret.
func (r *rig) endpointTo(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, body []byte)) (*receiver, webhooks.Endpoint, string) {
	t.Helper()
	rc := newReceiver(t, answer)
	ep, secret := r.create(t, rc.URL)
	return rc, ep, secret
}

// sendTest queues a test delivery to the endpoint, failing the test on an
// error.
func (r *rig) sendTest(t *testing.T, endpointID uuid.UUID) webhooks.Delivery {
	t.Helper()
	d, err := r.svc.SendTest(t.Context(), r.tenant, endpointID)
	if err != nil {
		t.Fatalf("send test delivery: %v", err)
	}
	return d
}

func (r *rig) deliveries(t *testing.T, endpointID uuid.UUID) []webhooks.Delivery {
	t.Helper()
	ds, err := r.svc.Deliveries(t.Context(), r.tenant, endpointID, uuid.Nil, 200)
	if err != nil {
		t.Fatalf("deliveries: %v", err)
	}
	return ds
}

// eventually waits up to 10 s until cond holds (testenv.Eventually),
// failing the test with what it waited for.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { return cond(), "waiting until " + what })
}

// never checks that cond stays false for d.
func never(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("got %s, want it not to happen", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
