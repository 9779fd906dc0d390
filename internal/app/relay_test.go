package app_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/relay"
)

// TestEventRelay: with EVENT_RELAY=nats the server publishes an order's
// events to JetStream, each on tenantd.<tenant_id>.<type> with Nats-Msg-Id
// = its event id, in version order, and /metrics shows the relay's lag and
// counters.
func TestEventRelay(t *testing.T) {
	natsURL, stop, err := relay.StartEmbedded(t.Context(), t.TempDir())
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(stop)
	s := apptest.New(t, apptest.Options{Config: func(c *config.Config) {
		c.EventRelay, c.NATSURL = config.RelayNATS, natsURL
	}})
	sh := apptest.NewShop(t, s, 10, 100)
	orderID := sh.Place(t, 1)
	var page struct {
		Data []struct {
			ID      string `json:"id"`
			Type    string `json:"type"`
			Version int64  `json:"version"`
		} `json:"data"`
	}
	resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/orders/" + orderID + "/events", Key: sh.Tenant.Key})
	if resp.Status != 200 {
		t.Fatalf("GET the order's events: got %d %s, want 200", resp.Status, resp.Body)
	}
	resp.JSON(t, &page)
	if len(page.Data) == 0 {
		t.Fatalf("order %s has no events", orderID)
	}

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	type got struct {
		subject string
		seq     uint64
	}
	found := map[string]got{}
	deadline := time.Now().Add(30 * time.Second)
	for len(found) < len(page.Data) {
		if time.Now().After(deadline) {
			t.Fatalf("got %d of the order's %d events in JetStream after 30s", len(found), len(page.Data))
		}
		time.Sleep(50 * time.Millisecond)
		st, err := js.Stream(t.Context(), relay.StreamName)
		if err != nil {
			continue // not created yet
		}
		info, err := st.Info(t.Context())
		if err != nil {
			t.Fatalf("stream info: %v", err)
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(t.Context(), seq)
			if err != nil {
				t.Fatalf("get %d: %v", seq, err)
			}
			found[m.Header.Get(jetstream.MsgIDHeader)] = got{subject: m.Subject, seq: seq}
		}
		for id := range found {
			keep := false
			for _, e := range page.Data {
				keep = keep || e.ID == id
			}
			if !keep {
				delete(found, id)
			}
		}
	}
	var last uint64
	for _, e := range page.Data {
		g := found[e.ID]
		if want := "tenantd." + sh.Tenant.ID + "." + e.Type; g.subject != want {
			t.Errorf("event %s (%s): got subject %q, want %q", e.ID, e.Type, g.subject, want)
		}
		if g.seq <= last {
			t.Errorf("event %s (version %d): got stream sequence %d after %d, want version order", e.ID, e.Version, g.seq, last)
		}
		last = g.seq
	}

	metrics := string(s.Do(apptest.Request{Method: "GET", Path: "/metrics"}).Body)
	for _, want := range []string{`tenantd_outbox_lag_seconds{subscriber="relay-nats"}`, "tenantd_relay_published_total", "tenantd_relay_publish_errors_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics: got no %s", want)
		}
	}
}
