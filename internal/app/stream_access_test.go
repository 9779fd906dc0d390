package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// sseMessage is one Server-Sent Events message.
type sseMessage struct {
	ID, Event, Data string
}

// sseClient is an open GET /v1/events/stream, read in the background.
type sseClient struct {
	Status   int
	Header   http.Header
	Body     []byte          // the body of a refused stream
	Messages chan sseMessage // closed when the stream ends
	cancel   context.CancelFunc
}

// Close hangs up.
func (c *sseClient) Close() { c.cancel() }

// openStream opens the event stream with the credential (and extra
// headers); a refused stream comes back with its status and body.
func openStream(t *testing.T, s *apptest.Server, query, credential string, header map[string]string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	req, err := http.NewRequestWithContext(ctx, "GET", s.URL+"/v1/events/stream"+query, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+credential)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream: %v", err)
	}
	c := &sseClient{Status: resp.StatusCode, Header: resp.Header, Messages: make(chan sseMessage, 1000), cancel: cancel}
	t.Cleanup(cancel)
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var buf strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			buf.WriteString(sc.Text())
		}
		c.Body = []byte(buf.String())
		close(c.Messages)
		return c
	}
	go func() {
		defer close(c.Messages)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var m sseMessage
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if m != (sseMessage{}) {
					c.Messages <- m
				}
				m = sseMessage{}
			case strings.HasPrefix(line, "id: "):
				m.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				m.Event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				m.Data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return c
}

// next returns the next message, failing after within; ok is false when
// the stream ended.
func (c *sseClient) next(t *testing.T, within time.Duration) (m sseMessage, ok bool) {
	t.Helper()
	select {
	case m, ok = <-c.Messages:
		return m, ok
	case <-time.After(within):
		t.Fatalf("no message and no end of stream within %v", within)
		return sseMessage{}, false
	}
}

// waitEnd reads until the stream ends, at most within after the change;
// it returns the stream_closed message's data and every event type seen.
func (c *sseClient) waitEnd(t *testing.T, within time.Duration) (closed map[string]string, types []string) {
	t.Helper()
	deadline := time.After(within)
	for {
		var m sseMessage
		var ok bool
		select {
		case m, ok = <-c.Messages:
		case <-deadline:
			t.Fatalf("the stream stayed open %v after access was lost (events meanwhile: %v)", within, types)
		}
		if !ok {
			return closed, types
		}
		if m.Event == "stream_closed" {
			if err := json.Unmarshal([]byte(m.Data), &closed); err != nil {
				t.Fatalf("stream_closed data %q: %v", m.Data, err)
			}
			if m.ID != "" {
				t.Errorf("stream_closed carries id %q: it would move the client's Last-Event-ID", m.ID)
			}
			continue
		}
		types = append(types, m.Event)
	}
}

// expectEvents reads n events of the stream, failing if it ends first.
func (c *sseClient) expectEvents(t *testing.T, n int) []sseMessage {
	t.Helper()
	var out []sseMessage
	for len(out) < n {
		m, ok := c.next(t, 10*time.Second)
		if !ok {
			t.Fatalf("the stream ended after %d of %d events", len(out), n)
		}
		out = append(out, m)
	}
	return out
}

// accessLossBound is how soon an open stream must end once its access is
// gone.
const accessLossBound = 5 * time.Second

// TestStreamEndsWhenAccessEnds: an open event stream ends, with a final
// stream_closed message saying why, within 5 s of its key's revocation, its
// tenant's suspension, its role losing events:read, its member's roles
// changing to ones without events:read, or its member's removal. Streams
// of other credentials go on.
func TestStreamEndsWhenAccessEnds(t *testing.T) {
	s := apptest.New(t, apptest.Options{})

	// started opens a stream for credential on the shop's log and reads
	// the events already there (one order: two events).
	started := func(t *testing.T, sh apptest.Shop, credential string) *sseClient {
		t.Helper()
		if resp := sh.Order(t, 1); resp.Status != 201 {
			t.Fatalf("order: got %d %s", resp.Status, resp.Body)
		}
		c := openStream(t, s, "", credential, nil)
		if c.Status != 200 {
			t.Fatalf("open stream: got %d %s", c.Status, c.Body)
		}
		c.expectEvents(t, 2)
		return c
	}
	// ends checks the stream ends soon after the change, saying why.
	ends := func(t *testing.T, c *sseClient, changed time.Time, wantCode string) {
		t.Helper()
		closed, types := c.waitEnd(t, accessLossBound)
		took := time.Since(changed)
		if took > accessLossBound {
			t.Fatalf("the stream ended %v after the change, want at most %v", took, accessLossBound)
		}
		if closed["code"] != wantCode || closed["detail"] == "" {
			t.Fatalf("stream_closed: got %v, want code %q with a detail", closed, wantCode)
		}
		t.Logf("the stream ended %v after the change (events meanwhile: %v)", took, types)
	}

	t.Run("key revoked", func(t *testing.T) {
		sh := apptest.NewShop(t, s, 100, 100)
		key := s.CreateKey(sh.Tenant.Key, "clerk")
		other := s.CreateKey(sh.Tenant.Key, "viewer")
		c := started(t, sh, key)
		bystander := openStream(t, s, "", other, nil)
		bystander.expectEvents(t, 2)
		if resp := s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + keyID(t, s, sh.Tenant.Key, key), Key: sh.Tenant.Key}); resp.Status != 204 {
			t.Fatalf("revoke: got %d %s", resp.Status, resp.Body)
		}
		ends(t, c, time.Now(), "unauthenticated")
		// The other key's stream is still delivering.
		if resp := sh.Order(t, 1); resp.Status != 201 {
			t.Fatalf("order: got %d", resp.Status)
		}
		if got := bystander.expectEvents(t, 2); got[0].Event != "order.placed" {
			t.Fatalf("bystander: got %v", got)
		}
	})

	t.Run("tenant suspended", func(t *testing.T) {
		sh := apptest.NewShop(t, s, 100, 100)
		c := started(t, sh, sh.Tenant.Key)
		resp := s.Do(apptest.Request{Method: "PATCH", Path: "/admin/v1/tenants/" + sh.Tenant.ID, Key: apptest.OperatorKey,
			Body: map[string]string{"status": "suspended"}})
		if resp.Status != 200 {
			t.Fatalf("suspend: got %d %s", resp.Status, resp.Body)
		}
		ends(t, c, time.Now(), "tenant_suspended")
	})

	t.Run("custom role loses events:read", func(t *testing.T) {
		sh := apptest.NewShop(t, s, 100, 100)
		if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: sh.Tenant.Key,
			Body: map[string]any{"name": "watcher", "permissions": []string{"events:read", "products:read"}}}); resp.Status != 201 {
			t.Fatalf("create role: got %d %s", resp.Status, resp.Body)
		}
		key := s.CreateKey(sh.Tenant.Key, "watcher")
		c := started(t, sh, key)
		if resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/roles/watcher", Key: sh.Tenant.Key,
			Body: map[string]any{"permissions": []string{"products:read"}}}); resp.Status != 200 {
			t.Fatalf("change role: got %d %s", resp.Status, resp.Body)
		}
		ends(t, c, time.Now(), "forbidden")
	})

	idp := testenv.NewOIDCProvider(t)
	member := func(t *testing.T, sh apptest.Shop, subject string, roles ...string) (memberID, token string) {
		t.Helper()
		registerIssuer(t, s, sh.Tenant.Key, map[string]any{"issuer": idp.Issuer, "audience": "aud-" + sh.Tenant.Slug})
		memberID = addMember(t, s, sh.Tenant.Key, map[string]any{"subject": subject, "roles": roles})
		return memberID, idp.Token(t, testenv.Claims{Subject: subject, Audience: []string{"aud-" + sh.Tenant.Slug}})
	}

	t.Run("member's roles changed to ones without events:read", func(t *testing.T) {
		sh := apptest.NewShop(t, s, 100, 100)
		id, token := member(t, sh, "carol", "clerk")
		c := started(t, sh, token)
		if resp := s.Do(apptest.Request{Method: "PATCH", Path: "/v1/members/" + id, Key: sh.Tenant.Key,
			Body: map[string]any{"roles": []string{"billing"}}}); resp.Status != 200 {
			t.Fatalf("change roles: got %d %s", resp.Status, resp.Body)
		}
		ends(t, c, time.Now(), "forbidden")
	})

	t.Run("member removed", func(t *testing.T) {
		sh := apptest.NewShop(t, s, 100, 100)
		id, token := member(t, sh, "dave", "clerk")
		c := started(t, sh, token)
		if resp := s.Do(apptest.Request{Method: "DELETE", Path: "/v1/members/" + id, Key: sh.Tenant.Key}); resp.Status != 204 {
			t.Fatalf("remove member: got %d %s", resp.Status, resp.Body)
		}
		ends(t, c, time.Now(), "unauthenticated")
		if again := openStream(t, s, "", token, nil); again.Status != 403 {
			t.Fatalf("reconnecting as the removed member: got %d, want 403", again.Status)
		}
	})
}
