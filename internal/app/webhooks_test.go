package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// hookReceiver is a tenant's webhook receiver: a real HTTP server that
// verifies every request with the published Standard Webhooks library
// against the secrets it is told, as a tenant's code would.
type hookReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	secrets  []string
	status   int
	verified []map[string]any // bodies that verified
	refused  int
}

func newHookReceiver(t *testing.T, status int) *hookReceiver {
	t.Helper()
	h := &hookReceiver{status: status}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		ok := err == nil && len(h.secrets) > 0
		for _, s := range h.secrets {
			wh, err := standardwebhooks.NewWebhook(s)
			if err != nil || wh.Verify(body, r.Header) != nil {
				ok = false
			}
		}
		var m map[string]any
		if ok && json.Unmarshal(body, &m) == nil {
			m["webhook-id"] = r.Header.Get("webhook-id")
			h.verified = append(h.verified, m)
		} else {
			h.refused++
		}
		w.WriteHeader(h.status)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) trust(secrets ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secrets = secrets
}

// got returns the types of the verified messages and how many were refused.
func (h *hookReceiver) got() (types []string, refused int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.verified {
		types = append(types, m["type"].(string))
	}
	return types, h.refused
}

func count(types []string, typ string) int {
	n := 0
	for _, t := range types {
		if t == typ {
			n++
		}
	}
	return n
}

// TestWebhooksOverHTTP drives the webhook routes through the real stack
// and checks every answer against the OpenAPI document: an order placed
// reaches the endpoint signed (verified by the Standard Webhooks library),
// a test event, the delivery log, retrying a delivery, recovering, rotating
// the secret (both secrets sign), ETags, and a 410 that disables the
// endpoint with an audit event.
func TestWebhooksOverHTTP(t *testing.T) {
	s := apptest.New(t, apptest.Options{Config: func(c *config.Config) { c.WebhookAllowPrivate = true }})
	sc := newSpecCheck(t, s)
	tn := s.NewTenant("hooks", "pro")
	key := tn.Key
	rc := newHookReceiver(t, http.StatusNoContent)

	sc.do(t, call{method: "POST", path: "/v1/webhooks", key: key, want: 422, invalid: true, body: map[string]any{"event_types": []string{"*"}}})
	sc.do(t, call{method: "POST", path: "/v1/webhooks", key: key, want: 422,
		body: map[string]any{"url": rc.URL, "event_types": []string{"Order Placed"}}})
	created := sc.do(t, call{method: "POST", path: "/v1/webhooks", key: key, want: 201,
		body: map[string]any{"url": rc.URL + "/in", "event_types": []string{"order.*", "webhook.test"}, "description": "shop"}})
	ep := created.Map(t)
	secret, _ := ep["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") || created.Header.Get("Cache-Control") != "no-store" || ep["status"] != "enabled" {
		t.Fatalf("got %s (Cache-Control %q), want an enabled endpoint with a whsec_ secret, no-store", created.Body, created.Header.Get("Cache-Control"))
	}
	rc.trust(secret)
	hook := "/v1/webhooks/" + ep["id"].(string)
	list := sc.do(t, call{method: "GET", path: "/v1/webhooks?limit=10", key: key, want: 200})
	if strings.Contains(string(list.Body), "whsec_") {
		t.Errorf("the list shows a secret: %s", list.Body)
	}
	got := sc.do(t, call{method: "GET", path: hook, key: key, want: 200})
	sc.do(t, call{method: "GET", path: hook, key: key, want: 304, header: map[string]string{"If-None-Match": got.Header.Get("ETag")}})
	sc.do(t, call{method: "PATCH", path: hook, key: key, want: 200, header: map[string]string{"If-Match": got.Header.Get("ETag")},
		body: map[string]any{"description": nil}})
	sc.do(t, call{method: "PATCH", path: hook, key: key, want: 412, header: map[string]string{"If-Match": got.Header.Get("ETag")},
		body: map[string]any{"description": "stale"}})
	sc.do(t, call{method: "PATCH", path: hook, key: key, want: 422, invalid: true, body: map[string]any{"status": "paused"}})

	// An order placed is delivered, signed.
	product := sc.do(t, call{method: "POST", path: "/v1/products", key: key, want: 201,
		body: map[string]any{"sku": "HOOK-1", "name": "Hooked", "price": 500, "currency": "EUR", "stock": 5}})
	since := time.Now().UTC().Add(-time.Second)
	sc.do(t, call{method: "POST", path: "/v1/orders", key: key, want: 201,
		body: map[string]any{"customer_id": "c-1", "items": []map[string]any{{"product_id": product.Map(t)["id"], "quantity": 1}}}})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		types, _ := rc.got()
		return count(types, "order.placed") == 1, "order.placed reaches the endpoint, verified"
	})
	sc.do(t, call{method: "POST", path: hook + "/test", key: key, want: 202})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		types, _ := rc.got()
		return count(types, "webhook.test") == 1, "the test event arrives"
	})

	// The delivery log.
	var deliveryID string
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		page := sc.do(t, call{method: "GET", path: hook + "/deliveries?limit=50", key: key, want: 200})
		var body struct {
			Data []struct {
				ID     string `json:"id"`
				Status string `json:"status"`
				Log    []struct {
					StatusCode *int `json:"status_code"`
				} `json:"log"`
			} `json:"data"`
		}
		page.JSON(t, &body)
		done := 0
		for _, d := range body.Data {
			if d.Status == "succeeded" && len(d.Log) == 1 && d.Log[0].StatusCode != nil && *d.Log[0].StatusCode == 204 {
				done++
				deliveryID = d.ID
			}
		}
		return done == 2, "both deliveries are logged as succeeded"
	})
	sc.do(t, call{method: "POST", path: hook + "/deliveries/" + deliveryID + "/retry", key: key, want: 202})
	sc.do(t, call{method: "POST", path: hook + "/deliveries/" + uuid.NewString() + "/retry", key: key, want: 404})
	rec := sc.do(t, call{method: "POST", path: hook + "/recover", key: key, want: 202, body: map[string]any{"since": since.Format(time.RFC3339Nano)}})
	if n := rec.Map(t)["enqueued"]; n != float64(1) {
		t.Errorf("recover: got %v enqueued, want 1 (the order.placed)", n)
	}
	sc.do(t, call{method: "POST", path: hook + "/recover", key: key, want: 422, invalid: true, body: map[string]any{}})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		types, _ := rc.got()
		return len(types) == 4, "the retried and recovered deliveries arrive"
	})

	// Rotation: both secrets sign for 24 h.
	rotated := sc.do(t, call{method: "POST", path: hook + "/rotate-secret", key: key, want: 200})
	newSecret := rotated.Map(t)["secret"].(string)
	if newSecret == secret || rotated.Map(t)["previous_secret_expires_at"] == nil {
		t.Fatalf("rotate: got %s, want a new secret and the old one's expiry", rotated.Body)
	}
	rc.trust(secret, newSecret) // the receiver requires both to verify
	sc.do(t, call{method: "POST", path: hook + "/test", key: key, want: 202})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		types, _ := rc.got()
		return count(types, "webhook.test") == 2, "a test event signed by both secrets"
	})
	if _, refused := rc.got(); refused != 0 {
		t.Errorf("the receiver refused %d messages, want 0", refused)
	}

	// 410 disables the endpoint, with an audit event.
	gone := newHookReceiver(t, http.StatusGone)
	goneEP := sc.do(t, call{method: "POST", path: "/v1/webhooks", key: key, want: 201,
		body: map[string]any{"url": gone.URL, "event_types": []string{"*"}}})
	gone.trust(goneEP.Map(t)["secret"].(string))
	goneHook := "/v1/webhooks/" + goneEP.Map(t)["id"].(string)
	sc.do(t, call{method: "POST", path: goneHook + "/test", key: key, want: 202})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		m := sc.do(t, call{method: "GET", path: goneHook, key: key, want: 200}).Map(t)
		return m["status"] == "disabled" && m["disabled_reason"] == "the endpoint answered 410 Gone", "the endpoint is disabled"
	})
	sc.do(t, call{method: "POST", path: goneHook + "/test", key: key, want: 409})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		r := s.Do(apptest.Request{Method: "GET", Path: "/v1/audit-events?action=webhook.disabled", Key: key})
		return r.Status == 200 && strings.Contains(string(r.Body), goneHook[len("/v1/webhooks/"):]), "the audit event"
	})

	sc.do(t, call{method: "DELETE", path: hook, key: key, want: 204})
	sc.do(t, call{method: "GET", path: hook, key: key, want: 404})
	sc.do(t, call{method: "DELETE", path: goneHook, key: key, want: 204})
}

// TestWebhookPrivateTargetsRefused: without WEBHOOK_ALLOW_PRIVATE (the
// default), endpoints on loopback, private and metadata addresses, and
// http URLs, are refused with 422 naming url.
func TestWebhookPrivateTargetsRefused(t *testing.T) {
	s, tn := apptest.NewWithTenant(t, "ssrf", "pro")
	for _, u := range []string{"https://127.0.0.1:8080/", "https://localhost/", "https://10.0.0.7/", "https://169.254.169.254/latest/meta-data",
		"https://[::ffff:127.0.0.1]/", "http://hooks.example.invalid/"} {
		resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/webhooks", Key: tn.Key, Body: map[string]any{"url": u, "event_types": []string{"*"}}})
		if resp.Status != 422 || !strings.Contains(string(resp.Body), `"field":"url"`) {
			t.Errorf("%s: got %d %s, want 422 naming url", u, resp.Status, resp.Body)
		}
	}
}
