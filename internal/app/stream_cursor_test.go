package app_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
)

// tenantEvent is an event of GET /v1/events, every field kept.
type tenantEvent map[string]json.RawMessage

func (e tenantEvent) str(t *testing.T, field string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(e[field], &s); err != nil {
		t.Fatalf("event field %s = %s: %v", field, e[field], err)
	}
	return s
}

// eventPage reads GET /v1/events?query as key, wanting 200.
func eventPage(t *testing.T, s *apptest.Server, key, query string) (data []tenantEvent, next *string) {
	t.Helper()
	resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/events?" + query, Key: key})
	if resp.Status != 200 {
		t.Fatalf("GET /v1/events?%s: got %d %s", query, resp.Status, resp.Body)
	}
	var p struct {
		Data       []tenantEvent `json:"data"`
		NextCursor *string       `json:"next_cursor"`
	}
	resp.JSON(t, &p)
	return p.Data, p.NextCursor
}

// invalidField returns the field a 422 names, failing on another status.
func invalidField(t *testing.T, resp apptest.Response) string {
	t.Helper()
	if resp.Status != 422 || resp.Code() != "validation_failed" {
		t.Fatalf("got %d %s, want 422 validation_failed", resp.Status, resp.Body)
	}
	var p struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	resp.JSON(t, &p)
	if len(p.Errors) != 1 {
		t.Fatalf("got errors %s, want one", resp.Body)
	}
	return p.Errors[0].Field
}

// TestEventCursorsAreOpaque: the event log shows a tenant no global
// position. Tenant A's events, with B's events appended between them, carry
// opaque cursors (no position field, no integer but the stream version);
// a cursor does not contain the position and opens only with the server's
// secret (another secret: 422). Cursors round-trip as after, cursor,
// next_cursor, SSE id and Last-Event-ID, also on a replica sharing the
// secret; another tenant's cursor, a tampered one and an integer
// position are 422 naming the parameter.
func TestEventCursorsAreOpaque(t *testing.T) {
	const secret = "cursor-secret-for-tests-0123456789abcdef"
	withSecret := func(s string) apptest.Options {
		return apptest.Options{Config: func(c *config.Config) { c.CursorSecret = s }}
	}
	s := apptest.New(t, withSecret(secret))
	replica := apptest.New(t, withSecret(secret))
	stranger := apptest.New(t, withSecret(strings.Repeat("z", 40)))
	a := apptest.NewShop(t, s, 100, 100)
	b := apptest.NewShop(t, s, 100, 100)
	order := func(sh apptest.Shop) {
		t.Helper()
		if resp := sh.Order(t, 1); resp.Status != 201 {
			t.Fatalf("order: got %d %s", resp.Status, resp.Body)
		}
	}
	order(a)
	for range 5 {
		order(b) // ten events of B between A's second and third
	}
	order(a)

	evs, next := eventPage(t, s, a.Tenant.Key, "limit=50")
	if len(evs) != 4 || next != nil {
		t.Fatalf("A's log: got %d events (next %v), want 4 and no next page", len(evs), next)
	}
	cursors := make([]string, len(evs))
	ids := make([]string, len(evs))
	for i, e := range evs {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range e {
				if !yield(k) {
					return
				}
			}
		})
		if want := []string{"created_at", "cursor", "data", "id", "metadata", "stream_id", "type", "version"}; !slices.Equal(keys, want) {
			t.Fatalf("event fields: got %v, want %v (no position)", keys, want)
		}
		cursors[i], ids[i] = e.str(t, "cursor"), e.str(t, "id")
		if len(cursors[i]) != 50 {
			t.Fatalf("cursor %q: want 50 characters", cursors[i])
		}
	}

	t.Run("the cursor reveals nothing", func(t *testing.T) {
		d := s.Env.OpenDB(t, 2)
		tenantID := uuid.MustParse(a.Tenant.ID)
		for i, id := range ids {
			var pos int64
			if err := d.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error {
				return tx.Raw("SELECT position FROM events WHERE id = ?", id).Scan(&pos).Error
			}); err != nil {
				t.Fatal(err)
			}
			raw, err := base64.RawURLEncoding.DecodeString(cursors[i])
			if err != nil {
				t.Fatalf("cursor %q is not base64url: %v", cursors[i], err)
			}
			var be, le [8]byte
			binary.BigEndian.PutUint64(be[:], uint64(pos))
			binary.LittleEndian.PutUint64(le[:], uint64(pos))
			if bytes.Contains(raw, be[5:]) || bytes.Contains(raw, le[:3]) {
				t.Errorf("cursor %q carries position %d", cursors[i], pos)
			}
		}
		// Without the secret, nobody opens it: a server with another one
		// refuses it.
		if f := invalidField(t, stranger.Do(apptest.Request{Method: "GET", Path: "/v1/events?after=" + cursors[1], Key: a.Tenant.Key})); f != "after" {
			t.Fatalf("another secret: 422 names %q, want after", f)
		}
	})

	t.Run("cursors round-trip", func(t *testing.T) {
		var paged []string
		query := "limit=1"
		for {
			page, next := eventPage(t, s, a.Tenant.Key, query)
			for _, e := range page {
				paged = append(paged, e.str(t, "id"))
			}
			if next == nil {
				break
			}
			if *next != page[0].str(t, "cursor") {
				t.Fatalf("next_cursor %q is not the page's last event's cursor %q", *next, page[0].str(t, "cursor"))
			}
			query = "limit=1&after=" + url.QueryEscape(*next)
		}
		if !slices.Equal(paged, ids) {
			t.Fatalf("paged with next_cursor: got %v, want %v", paged, ids)
		}
		for _, srv := range []*apptest.Server{s, replica} {
			for _, param := range []string{"after", "cursor"} {
				rest, _ := eventPage(t, srv, a.Tenant.Key, param+"="+cursors[1])
				if len(rest) != 2 || rest[0].str(t, "id") != ids[2] || rest[1].str(t, "id") != ids[3] {
					t.Fatalf("%s=<second event's cursor>: got %d events, want the last two", param, len(rest))
				}
			}
		}
		c := openStream(t, s, "?follow=false", a.Tenant.Key, nil)
		var streamed []string
		for m := range c.Messages {
			streamed = append(streamed, m.ID)
			var data tenantEvent
			if err := json.Unmarshal([]byte(m.Data), &data); err != nil || data["position"] != nil || data.str(t, "cursor") != m.ID {
				t.Fatalf("SSE data %s: want the event with its cursor (the id) and no position (%v)", m.Data, err)
			}
		}
		if !slices.Equal(streamed, cursors) {
			t.Fatalf("SSE ids: got %v, want the events' cursors %v", streamed, cursors)
		}
		c = openStream(t, replica, "?follow=false", a.Tenant.Key, map[string]string{"Last-Event-ID": cursors[1]})
		streamed = nil
		for m := range c.Messages {
			streamed = append(streamed, m.ID)
		}
		if !slices.Equal(streamed, cursors[2:]) {
			t.Fatalf("resumed with Last-Event-ID: got %v, want %v", streamed, cursors[2:])
		}
	})

	t.Run("foreign and tampered cursors are 422", func(t *testing.T) {
		// Another character of the cursor's alphabet (base64url), so that
		// the tampered cursor reaches the cursor check itself: a character
		// outside it (flipping bits could make a ';' of an '8') is refused
		// earlier, by httpx.CheckParams, as a query Go's parser cannot read.
		tampered := []byte(cursors[1])
		if tampered[20] == 'A' {
			tampered[20] = 'B'
		} else {
			tampered[20] = 'A'
		}
		for _, tc := range []struct {
			name, path, key string
			header          map[string]string
			want            string
		}{
			{"A's cursor used by B", "/v1/events?after=" + cursors[1], b.Tenant.Key, nil, "after"},
			{"A's cursor used by B on the stream", "/v1/events/stream?follow=false&cursor=" + cursors[1], b.Tenant.Key, nil, "cursor"},
			{"tampered", "/v1/events?after=" + string(tampered), a.Tenant.Key, nil, "after"},
			{"tampered cursor parameter", "/v1/events?cursor=" + string(tampered), a.Tenant.Key, nil, "cursor"},
			{"tampered Last-Event-ID", "/v1/events/stream?follow=false", a.Tenant.Key, map[string]string{"Last-Event-ID": string(tampered)}, "Last-Event-ID"},
			{"an integer position", "/v1/events?after=3", a.Tenant.Key, nil, "after"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp := s.Do(apptest.Request{Method: "GET", Path: tc.path, Key: tc.key, Header: tc.header})
				if f := invalidField(t, resp); f != tc.want {
					t.Fatalf("422 names %q, want %q", f, tc.want)
				}
			})
		}
	})
}
