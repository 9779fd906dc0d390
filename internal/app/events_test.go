package app_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/apptest"
)

// TestEventLog: a tenant reads its own events, page by page, and never
// another tenant's.
func TestEventLog(t *testing.T) {
	s, a := apptest.NewWithShop(t, 10, 100)
	b := apptest.NewShop(t, s, 10, 100)
	aOrder := a.Place(t, 1)
	bOrder := b.Place(t, 1)

	var types []string
	path := "/v1/events?limit=1"
	for pages := 0; pages < 10; pages++ {
		resp := s.Do(apptest.Request{Method: "GET", Path: path, Key: a.Tenant.Key})
		if resp.Status != 200 {
			t.Fatalf("GET %s: got %d %s", path, resp.Status, resp.Body)
		}
		if contains(string(resp.Body), bOrder) {
			t.Fatalf("A's event log shows B's order: %s", resp.Body)
		}
		var p struct {
			Data []struct {
				Type     string `json:"type"`
				StreamID string `json:"stream_id"`
			} `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		resp.JSON(t, &p)
		for _, e := range p.Data {
			types = append(types, e.Type)
			if e.StreamID != "order-"+aOrder {
				t.Fatalf("unexpected stream %s", e.StreamID)
			}
		}
		if p.NextCursor == nil {
			break
		}
		path = "/v1/events?limit=1&after=" + *p.NextCursor
	}
	if strings.Join(types, ",") != "order.placed,stock.reserved" {
		t.Fatalf("A's events: got %v", types)
	}
	if r := s.Do(apptest.Request{Method: "GET", Path: "/v1/events?after=-1", Key: a.Tenant.Key}); r.Status != 422 {
		t.Fatalf("bad after: got %d", r.Status)
	}
}

// TestEventStream: the SSE stream delivers new events as they happen, with
// the position as the event id.
func TestEventStream(t *testing.T) {
	s, sh := apptest.NewWithShop(t, 10, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", s.URL+"/v1/events/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sh.Tenant.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	id := sh.Place(t, 1)
	sc := bufio.NewScanner(resp.Body)
	var seen []string
	for sc.Scan() && len(seen) < 2 {
		if line, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			seen = append(seen, line)
		}
		if strings.HasPrefix(sc.Text(), "data: ") && !strings.Contains(sc.Text(), id) {
			t.Fatalf("unexpected event %s", sc.Text())
		}
	}
	if strings.Join(seen, ",") != "order.placed,stock.reserved" {
		t.Fatalf("streamed: got %v (%v)", seen, sc.Err())
	}
	// Draining ends open streams, so they cannot hold a shutdown up.
	s.App.SetDraining()
	ended := make(chan struct{})
	go func() {
		for sc.Scan() {
		}
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(3 * time.Second):
		t.Fatal("the stream stayed open after draining began")
	}
}
