package app_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/app"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/orders"
)

// TestOperatorDeadLetters: the operator lists, reads, replays and discards
// dead letters over HTTP (issue 12, part 4), each action lands in the
// platform audit log, and that log's chain verifies. A test subscriber
// fails on this test's order.placed events until told not to.
func TestOperatorDeadLetters(t *testing.T) {
	// A name of this run's own: the package's database keeps earlier runs'
	// dead letters (go test -count).
	subscriber := "test-dead-letters-" + testenv.RandomHex(4)
	var failing atomic.Bool
	var handled atomic.Int64
	var ours sync.Map // this test's tenants: a new subscriber reads the log from its start
	failing.Store(true)
	s := apptest.New(t, apptest.Options{BeforeRun: func(a *app.App) {
		a.Events.Subscribe(subscriber, []string{orders.EventPlaced}, func(_ context.Context, _ *gorm.DB, e events.Event) error {
			if _, ok := ours.Load(e.TenantID); !ok {
				return nil // an order of another test, or of an earlier run
			}
			if failing.Load() {
				return errors.New("test subscriber refuses")
			}
			handled.Add(1)
			return nil
		})
	}})
	a := s.NewTenant("dl-a", "pro")
	b := s.NewTenant("dl-b", "pro")
	ours.Store(uuid.MustParse(a.ID), true)
	ours.Store(uuid.MustParse(b.ID), true)
	op := func(method, path string) apptest.Response {
		return s.Do(apptest.Request{Method: method, Path: path, Key: apptest.OperatorKey})
	}
	list := func(t *testing.T, query string) []any {
		t.Helper()
		resp := op("GET", "/admin/v1/dead-letters?"+query)
		if resp.Status != http.StatusOK {
			t.Fatalf("list %s: got %d %s", query, resp.Status, resp.Body)
		}
		return resp.Map(t)["data"].([]any)
	}
	placeOrder := func() {
		product := createProduct(t, s, a.Key, "DL-"+apptest.Slug("p"), 5)
		resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/orders", Key: a.Key,
			Body: map[string]any{"customer_id": "c-1", "items": []map[string]any{{"product_id": product, "quantity": 1}}}})
		if resp.Status != http.StatusCreated {
			t.Fatalf("place order: got %d %s", resp.Status, resp.Body)
		}
	}
	parked := func(n int) []any {
		var got []any
		testenv.Eventually(t, 30*time.Second, func() (bool, string) {
			got = list(t, "subscriber="+subscriber)
			return len(got) >= n, "the subscriber's dead letters"
		})
		return got
	}

	placeOrder()
	first := parked(1)[0].(map[string]any)
	id := first["id"].(string)
	if first["tenant_id"] != a.ID || first["event_type"] != orders.EventPlaced || first["subscriber"] != subscriber {
		t.Fatalf("dead letter: got %v, want tenant %s, %s, %s", first, a.ID, orders.EventPlaced, subscriber)
	}

	t.Run("filters", func(t *testing.T) {
		if got := list(t, "tenant_id="+a.ID+"&subscriber="+subscriber); len(got) != 1 {
			t.Errorf("tenant A: got %d, want 1", len(got))
		}
		if got := list(t, "tenant_id="+b.ID); len(got) != 0 {
			t.Errorf("tenant B: got %d, want 0", len(got))
		}
		if got := list(t, "subscriber=no-such-subscriber"); len(got) != 0 {
			t.Errorf("unknown subscriber: got %d, want 0", len(got))
		}
		if resp := op("GET", "/admin/v1/dead-letters?tenant_id=nope"); resp.Status != 422 {
			t.Errorf("bad tenant_id: got %d %s, want 422", resp.Status, resp.Body)
		}
	})

	t.Run("read one, with its event", func(t *testing.T) {
		resp := op("GET", "/admin/v1/dead-letters/"+id)
		if resp.Status != 200 {
			t.Fatalf("got %d %s", resp.Status, resp.Body)
		}
		m := resp.Map(t)
		ev, _ := m["event"].(map[string]any)
		if ev["type"] != orders.EventPlaced || m["attempts"].(float64) < 1 || m["error"] == "" {
			t.Errorf("got %s, want the order.placed event, attempts and the error", resp.Body)
		}
		if resp := op("GET", "/admin/v1/dead-letters/"+apptest.Slug("x")); resp.Status != 422 {
			t.Errorf("malformed id: got %d, want 422", resp.Status)
		}
		if resp := op("GET", "/admin/v1/dead-letters/01900000-0000-7000-8000-000000000000"); resp.Status != 404 {
			t.Errorf("unknown id: got %d, want 404", resp.Status)
		}
	})

	t.Run("tenant credentials cannot reach it", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/admin/v1/dead-letters", Key: a.Key})
		if resp.Status != 403 {
			t.Errorf("got %d, want 403", resp.Status)
		}
	})

	t.Run("replay that fails again keeps it", func(t *testing.T) {
		before := op("GET", "/admin/v1/dead-letters/"+id).Map(t)["attempts"].(float64)
		resp := op("POST", "/admin/v1/dead-letters/"+id+"/replay")
		if resp.Status != 409 {
			t.Fatalf("got %d %s, want 409", resp.Status, resp.Body)
		}
		if after := op("GET", "/admin/v1/dead-letters/"+id).Map(t)["attempts"].(float64); after != before+1 {
			t.Errorf("attempts: got %v, want %v", after, before+1)
		}
	})

	t.Run("replay that succeeds removes it", func(t *testing.T) {
		failing.Store(false)
		defer failing.Store(true)
		resp := op("POST", "/admin/v1/dead-letters/"+id+"/replay")
		if resp.Status != 200 || resp.Map(t)["tenant_id"] != a.ID {
			t.Fatalf("got %d %s, want 200 naming tenant A", resp.Status, resp.Body)
		}
		if handled.Load() != 1 {
			t.Errorf("handler ran %d times, want 1", handled.Load())
		}
		if resp := op("GET", "/admin/v1/dead-letters/"+id); resp.Status != 404 {
			t.Errorf("after replay: got %d, want 404", resp.Status)
		}
	})

	t.Run("discard", func(t *testing.T) {
		placeOrder()
		second := parked(1)[0].(map[string]any)["id"].(string)
		if resp := op("DELETE", "/admin/v1/dead-letters/"+second); resp.Status != 204 {
			t.Fatalf("discard: got %d %s, want 204", resp.Status, resp.Body)
		}
		if resp := op("DELETE", "/admin/v1/dead-letters/"+second); resp.Status != 404 {
			t.Errorf("discard again: got %d, want 404", resp.Status)
		}
		if handled.Load() != 1 {
			t.Errorf("handler ran %d times, want 1 (a discard does not run it)", handled.Load())
		}
	})

	t.Run("platform audit log", func(t *testing.T) {
		resp := op("GET", "/admin/v1/audit-events?limit=200")
		if resp.Status != 200 {
			t.Fatalf("got %d %s", resp.Status, resp.Body)
		}
		var actions []string
		for _, e := range resp.Map(t)["data"].([]any) {
			m := e.(map[string]any)
			if m["actor"] != "operator:operator-key" || m["hash"] == nil {
				t.Errorf("entry %v: want the operator as actor and a hash", m)
			}
			actions = append(actions, m["action"].(string)+" "+strconv.Itoa(int(m["status"].(float64))))
		}
		want := []string{ // newest first
			"DELETE /admin/v1/dead-letters/:id 404",
			"DELETE /admin/v1/dead-letters/:id 204",
			"POST /admin/v1/dead-letters/:id/replay 200",
			"POST /admin/v1/dead-letters/:id/replay 409",
		}
		if len(actions) < len(want) {
			t.Fatalf("got actions %v, want at least %v", actions, want)
		}
		for i, w := range want {
			if actions[i] != w {
				t.Errorf("entry %d: got %q, want %q (all: %v)", i, actions[i], w, actions)
			}
		}
		if resp := op("GET", "/admin/v1/audit-events?cursor=x"); resp.Status != 422 {
			t.Errorf("bad cursor: got %d, want 422", resp.Status)
		}
		d := testenv.Get(t).OpenDB(t, 2)
		r, err := audit.NewPlatformLog(d, nil).Verify(t.Context())
		if err != nil || !r.OK() || r.HeadSeq < int64(len(want)) {
			t.Fatalf("verify: got %+v, %v; want a chain that holds, of at least %d", r, err, len(want))
		}
		var out strings.Builder
		if err := audit.RunVerify(t.Context(), d, audit.VerifyArgs{Platform: true, MaxUnsealedAge: time.Second}, &out); err != nil ||
			!strings.HasPrefix(out.String(), "ok      platform events=") {
			t.Fatalf("audit verify --platform: got %q, %v", out.String(), err)
		}
	})
}
