package app_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/apptest"
)

// freeStreams is the free plan's max_event_streams (migration 0017).
const freeStreams = 5

// TestStreamCapPerTenant: a tenant holds at most its plan's number of open
// event streams, counted across replicas: the next is 429 rate_limited
// (problem+json, Retry-After); closing one frees a slot; other tenants are
// not affected.
func TestStreamCapPerTenant(t *testing.T) {
	one := apptest.New(t, apptest.Options{})
	two := apptest.New(t, apptest.Options{})
	a := one.NewTenant("streams-a", "free")
	b := one.NewTenant("streams-b", "free")

	// The cap's streams, on two replicas.
	var open []*sseClient
	for i := range freeStreams {
		s := one
		if i%2 == 1 {
			s = two
		}
		c := openStream(t, s, "", a.Key, nil)
		if c.Status != 200 {
			t.Fatalf("stream %d of %d: got %d %s, want 200", i+1, freeStreams, c.Status, c.Body)
		}
		open = append(open, c)
	}
	for _, s := range []*apptest.Server{one, two} {
		c := openStream(t, s, "", a.Key, nil)
		if c.Status != http.StatusTooManyRequests {
			t.Fatalf("stream %d: got %d %s, want 429", freeStreams+1, c.Status, c.Body)
		}
		if ct := c.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("429 content type: got %q, want application/problem+json", ct)
		}
		if n, err := strconv.Atoi(c.Header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("429 Retry-After: got %q, want whole seconds", c.Header.Get("Retry-After"))
		}
		if code := (apptest.Response{Body: c.Body}).Code(); code != "rate_limited" || !strings.Contains(string(c.Body), "event streams") {
			t.Errorf("429: got code %q (%s), want rate_limited naming event streams", code, c.Body)
		}
	}
	if c := openStream(t, two, "", b.Key, nil); c.Status != 200 {
		t.Fatalf("another tenant's stream: got %d %s, want 200", c.Status, c.Body)
	}

	// Hanging up frees the slot, on either replica.
	// (Polled gently: the free plan's rate limit is 10 requests a second.)
	open[0].Close()
	start := time.Now()
	for {
		c := openStream(t, two, "", a.Key, nil)
		if c.Status == 200 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no slot 5 s after a stream was closed: got %d %s", c.Status, c.Body)
		}
		time.Sleep(200 * time.Millisecond) // polled gently: the free plan's rate limit is 10 requests a second
	}
	t.Logf("the slot was free %v after the client hung up", time.Since(start))
	if c := openStream(t, one, "", a.Key, nil); c.Status != http.StatusTooManyRequests || !strings.Contains(string(c.Body), "event streams") {
		t.Fatalf("past the cap again: got %d %s, want 429 naming event streams", c.Status, c.Body)
	}
}
