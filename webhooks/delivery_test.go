package webhooks_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/webhooks"
)

// verifier checks a request's signature with the published Standard
// Webhooks Go library, as a tenant's receiver would. It ignores the
// timestamp tolerance: the tests' clock is not the library's.
func verify(t *testing.T, secret string, r received) error {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("library rejects the secret %q...: %v", secret[:10], err)
	}
	return wh.VerifyIgnoringTimestamp(r.Body, r.Header)
}

// TestSignedDeliveryFromTheEventLog: an event appended in a tenant's
// transaction reaches, through the real dispatcher, every endpoint whose
// filter admits its type and no other, signed so that the Standard
// Webhooks library verifies it, with webhook-id = the event id and the
// Standard Webhooks body.
func TestSignedDeliveryFromTheEventLog(t *testing.T) {
	r := newRig(t, func(o *webhooks.Options) { o.Now = nil }) // real time: the library checks it too
	orders := newReceiver(t, nil)
	payments := newReceiver(t, nil)
	epOrders, secret := r.create(t, orders.URL+"/hooks", "order.*")
	r.create(t, payments.URL, "payment.succeeded")
	r.start()

	r.dispatch(t)

	ev := r.appendEvent(t, "order-"+testenv.RandomHex(4), "order.placed", map[string]any{"total": 2599, "currency": "EUR"})
	eventually(t, "the order endpoint receives the event", func() bool { return len(orders.requests()) == 1 })
	got := orders.requests()[0]
	if err := verify(t, secret, got); err != nil {
		t.Errorf("Standard Webhooks library: %v, want the signature verified", err)
	}
	wh, _ := standardwebhooks.NewWebhook(secret)
	if err := wh.Verify(got.Body, got.Header); err != nil {
		t.Errorf("library with timestamp tolerance: %v", err)
	}
	if id := got.Header.Get("webhook-id"); id != ev.ID.String() {
		t.Errorf("got webhook-id %s, want the event id %s", id, ev.ID)
	}
	var body struct {
		Type      string         `json:"type"`
		Timestamp time.Time      `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatalf("body %s: %v", got.Body, err)
	}
	if body.Type != "order.placed" || body.Data["total"] != float64(2599) || body.Timestamp.IsZero() {
		t.Errorf("got body %s, want {type: order.placed, timestamp, data: the event's}", got.Body)
	}
	// Tampering is caught.
	tampered := received{Header: got.Header, Body: []byte(strings.Replace(string(got.Body), "2599", "1", 1))}
	if err := verify(t, secret, tampered); err == nil {
		t.Error("got a tampered body verified, want it refused")
	}
	eventually(t, "the delivery is recorded as succeeded", func() bool {
		ds := r.deliveries(t, epOrders.ID)
		return len(ds) == 1 && ds[0].Status == webhooks.DeliverySucceeded && len(ds[0].Log) == 1 && ds[0].Log[0].StatusCode == 200
	})
	never(t, "a delivery to the payment.succeeded endpoint", 200*time.Millisecond, func() bool { return len(payments.requests()) > 0 })
}

// TestRetrySchedule: a failing endpoint is tried again after 5 s, 5 min,
// 30 min, 2 h, 5 h, 10 h and 24 h (jitter pinned to 0 here), never before,
// and the delivery fails after the eighth attempt. The log records each
// attempt's status, attempt number and next retry.
func TestRetrySchedule(t *testing.T) {
	r := newRig(t, nil)
	rc, ep, _ := r.endpointTo(t, status(http.StatusInternalServerError))
	r.start()
	d := r.sendTest(t, ep.ID)
	for i, wait := range webhooks.DefaultSchedule {
		attempt := i + 1
		eventually(t, "attempt "+itoa(attempt), func() bool { return len(rc.requests()) == attempt })
		var last webhooks.Delivery
		eventually(t, "attempt "+itoa(attempt)+" is recorded", func() bool {
			last = r.deliveries(t, ep.ID)[0]
			return last.Attempts == attempt
		})
		if got, want := last.NextAttemptAt.Sub(last.LastAttemptAt), wait; got != want {
			t.Fatalf("attempt %d: got next attempt after %s, want %s", attempt, got, want)
		}
		a := last.Log[attempt-1]
		if a.Number != attempt || a.StatusCode != 500 || !a.NextRetryAt.Equal(last.NextAttemptAt) {
			t.Fatalf("attempt %d: got log %+v, want attempt %d, 500, next retry %s", attempt, a, attempt, last.NextAttemptAt)
		}
		r.clock.Advance(wait - time.Second)
		never(t, "a retry before its time", 100*time.Millisecond, func() bool { return len(rc.requests()) > attempt })
		r.clock.Advance(time.Second)
	}
	eventually(t, "attempt 8", func() bool { return len(rc.requests()) == 8 })
	eventually(t, "the delivery fails", func() bool {
		got := r.deliveries(t, ep.ID)[0]
		return got.ID == d.ID && got.Status == webhooks.DeliveryFailed && got.Attempts == 8 && got.NextAttemptAt.IsZero()
	})
	r.clock.Advance(48 * time.Hour)
	never(t, "a ninth attempt", 200*time.Millisecond, func() bool { return len(rc.requests()) > 8 })

	// Retry sends a failed delivery once more.
	if _, err := r.svc.Retry(t.Context(), r.tenant, ep.ID, d.ID); err != nil {
		t.Fatalf("retry: %v", err)
	}
	eventually(t, "the retried attempt", func() bool { return len(rc.requests()) == 9 })
	for _, req := range rc.requests() {
		if req.Header.Get("webhook-id") != rc.requests()[0].Header.Get("webhook-id") {
			t.Fatalf("got webhook-id %s, want the same on every attempt", req.Header.Get("webhook-id"))
		}
	}
}

func TestScheduleJitter(t *testing.T) {
	for _, tc := range []struct {
		jitter float64
		want   time.Duration
	}{{0, 4500 * time.Millisecond}, {0.5, 5 * time.Second}, {0.999999, 5500 * time.Millisecond}} {
		got, ok := webhooks.DefaultSchedule.Next(1, func() float64 { return tc.jitter })
		if !ok || got.Round(time.Millisecond) != tc.want {
			t.Errorf("jitter %v: got %s %v, want %s", tc.jitter, got, ok, tc.want)
		}
	}
	if _, ok := webhooks.DefaultSchedule.Next(8, nil); ok {
		t.Error("got a retry after the eighth attempt, want none")
	}
}

// auditActions lists the tenant's audit events of the delivery workers.
func auditActions(t *testing.T, r *rig) []string {
	t.Helper()
	got := testenv.Query[[]string](t, r.owner, r.tenant, `SELECT action || ' ' || resource || ' ' || (summary->>'reason') FROM audit_events
			WHERE tenant_id = ? AND actor = ? ORDER BY position`, r.tenant, webhooks.Actor)
	return got
}

// TestGoneDisablesEndpoint: a 410 fails the delivery at once, disables the
// endpoint and writes an audit event; nothing more is sent to it.
func TestGoneDisablesEndpoint(t *testing.T) {
	r := newRig(t, nil)
	rc, ep, _ := r.endpointTo(t, status(http.StatusGone))
	r.start()
	r.sendTest(t, ep.ID)
	eventually(t, "the endpoint is disabled", func() bool {
		got, err := r.svc.Get(t.Context(), r.tenant, ep.ID)
		return err == nil && got.Status == webhooks.StatusDisabled && got.DisabledReason == webhooks.ReasonGone
	})
	ds := r.deliveries(t, ep.ID)
	if len(ds) != 1 || ds[0].Status != webhooks.DeliveryFailed || ds[0].LastStatusCode != 410 {
		t.Fatalf("got deliveries %+v, want one failed with 410", ds)
	}
	want := webhooks.ActionDisabled + " webhook:" + ep.ID.String() + " " + webhooks.ReasonGone
	if got := auditActions(t, r); len(got) != 1 || got[0] != want {
		t.Fatalf("got audit events %q, want [%q]", got, want)
	}
	if _, err := r.svc.SendTest(t.Context(), r.tenant, ep.ID); err == nil {
		t.Error("got a test event accepted for a disabled endpoint, want an error")
	}
	if len(rc.requests()) != 1 {
		t.Errorf("got %d requests, want 1", len(rc.requests()))
	}
}

// TestThreeDaysOfFailuresDisable: an endpoint that has failed every attempt
// for 3 days is disabled on the next failure, with an audit event.
func TestThreeDaysOfFailuresDisable(t *testing.T) {
	r := newRig(t, nil)
	_, ep, _ := r.endpointTo(t, status(http.StatusServiceUnavailable))
	r.start()
	r.sendTest(t, ep.ID)
	eventually(t, "the first failure", func() bool { return r.deliveries(t, ep.ID)[0].Attempts == 1 })
	r.clock.Advance(webhooks.FailingLimit - time.Minute)
	// A second delivery fails too, but the endpoint has not failed for
	// 3 days yet.
	eventually(t, "the second failure", func() bool { return r.deliveries(t, ep.ID)[0].Attempts == 2 })
	if got, _ := r.svc.Get(t.Context(), r.tenant, ep.ID); got.Status != webhooks.StatusEnabled {
		t.Fatalf("got %s before 3 days of failures, want enabled", got.Status)
	}
	r.clock.Advance(5*time.Minute + time.Minute)
	eventually(t, "the endpoint is disabled", func() bool {
		got, err := r.svc.Get(t.Context(), r.tenant, ep.ID)
		return err == nil && got.Status == webhooks.StatusDisabled && got.DisabledReason == webhooks.ReasonFailing
	})
	want := webhooks.ActionDisabled + " webhook:" + ep.ID.String() + " " + webhooks.ReasonFailing
	if got := auditActions(t, r); len(got) != 1 || got[0] != want {
		t.Fatalf("got audit events %q, want [%q]", got, want)
	}
	// Enabling it again lets its pending deliveries through.
	enabled := webhooks.StatusEnabled
	got, err := r.svc.Update(t.Context(), r.tenant, ep.ID, webhooks.EndpointPatch{Status: &enabled})
	if err != nil || got.Status != webhooks.StatusEnabled || got.DisabledReason != "" {
		t.Fatalf("enable: got %s %q, %v, want enabled without a reason", got.Status, got.DisabledReason, err)
	}
}

// TestSlowEndpointDoesNotHoldOthers: while one endpoint hangs on every
// request, with many deliveries queued, another endpoint's deliveries go
// through at once.
func TestSlowEndpointDoesNotHoldOthers(t *testing.T) {
	r := newRig(t, func(o *webhooks.Options) { o.Workers = 4; o.PerEndpoint = 2 })
	release := make(chan struct{})
	var slowCalls atomic.Int32
	slow := newReceiver(t, func(w http.ResponseWriter, req *http.Request, _ []byte) {
		slowCalls.Add(1)
		select {
		case <-release:
		case <-req.Context().Done():
		}
		w.WriteHeader(http.StatusOK)
	})
	t.Cleanup(func() { close(release) })
	fast := newReceiver(t, nil)
	slowEP, _ := r.create(t, slow.URL)
	fastEP, _ := r.create(t, fast.URL)
	for range 10 {
		r.sendTest(t, slowEP.ID)
	}
	r.start()
	eventually(t, "the slow endpoint holds its share of workers", func() bool { return slowCalls.Load() == 2 })
	start := time.Now()
	for range 3 {
		r.sendTest(t, fastEP.ID)
	}
	eventually(t, "the fast endpoint gets its deliveries", func() bool { return len(fast.requests()) == 3 })
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the fast endpoint waited %s, want well under the slow one's timeout", took)
	}
	if n := slowCalls.Load(); n != 2 {
		t.Errorf("got %d requests in flight to the slow endpoint, want at most 2 (PerEndpoint)", n)
	}
}

// TestExpiredLeaseIsRedelivered: a delivery claimed by a replica that
// crashed (its lease still held) is left alone until the lease expires,
// then delivered by another worker.
func TestExpiredLeaseIsRedelivered(t *testing.T) {
	r := newRig(t, nil)
	rc, ep, _ := r.endpointTo(t, nil)
	d := r.sendTest(t, ep.ID)
	// The crashed replica's claim, as claimDelivery writes it.
	testenv.Exec(t, r.owner, r.tenant, `UPDATE webhook_deliveries SET lease_owner = 'webhooks:crashed', lease_expires_at = ?
			WHERE tenant_id = ? AND id = ?`, r.clock.Now().Add(time.Minute), r.tenant, d.ID)
	r.start()
	never(t, "a delivery while another worker's lease holds", 300*time.Millisecond, func() bool { return len(rc.requests()) > 0 })
	r.clock.Advance(time.Minute)
	eventually(t, "the delivery after the lease expired", func() bool { return len(rc.requests()) == 1 })
	eventually(t, "it is recorded", func() bool { return r.deliveries(t, ep.ID)[0].Status == webhooks.DeliverySucceeded })
}

// TestRotateSecretSignsWithBoth: after a rotation both secrets sign for
// 24 h, so receivers with either verify; then only the new one does.
func TestRotateSecretSignsWithBoth(t *testing.T) {
	r := newRig(t, nil)
	rc, ep, oldSecret := r.endpointTo(t, nil)
	rotated, newSecret, err := r.svc.RotateSecret(t.Context(), r.tenant, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if newSecret == oldSecret || !strings.HasPrefix(newSecret, webhooks.SecretPrefix) {
		t.Fatalf("got new secret %.10s..., want another whsec_ secret", newSecret)
	}
	if want := r.clock.Now().Add(webhooks.SecretOverlap); !rotated.PreviousExpiresAt.Equal(want) {
		t.Errorf("got previous secret until %s, want %s", rotated.PreviousExpiresAt, want)
	}
	r.start()
	r.sendTest(t, ep.ID)
	eventually(t, "the first test event", func() bool { return len(rc.requests()) == 1 })
	// Recorded before the clock jumps, or its lease would expire and the
	// delivery (at least once) be sent again.
	eventually(t, "the first test event is recorded", func() bool {
		return r.deliveries(t, ep.ID)[0].Status == webhooks.DeliverySucceeded
	})
	first := rc.requests()[0]
	if n := len(strings.Fields(first.Header.Get("webhook-signature"))); n != 2 {
		t.Errorf("got %d signatures, want 2 during the overlap", n)
	}
	for name, s := range map[string]string{"old": oldSecret, "new": newSecret} {
		if err := verify(t, s, first); err != nil {
			t.Errorf("%s secret during the overlap: %v, want verified", name, err)
		}
	}
	r.clock.Advance(webhooks.SecretOverlap + time.Second)
	r.sendTest(t, ep.ID)
	eventually(t, "the second test event", func() bool { return len(rc.requests()) == 2 })
	second := rc.requests()[1]
	if err := verify(t, newSecret, second); err != nil {
		t.Errorf("new secret after the overlap: %v, want verified", err)
	}
	if err := verify(t, oldSecret, second); err == nil {
		t.Error("old secret after the overlap: verified, want refused")
	}
}

// TestRecoverSince resends every event since a time that the endpoint's
// filter admits, with the original event ids, and none before it.
func TestRecoverSince(t *testing.T) {
	r := newRig(t, nil)
	rc := newReceiver(t, nil)
	appendEvent := func(typ string) events.Event {
		return r.appendEvent(t, "s-"+testenv.RandomHex(4), typ, map[string]int{"n": 1})
	}
	appendEvent("order.placed") // before since
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	want := []string{appendEvent("order.placed").ID.String(), appendEvent("order.completed").ID.String()}
	appendEvent("payment.succeeded") // not in the filter
	ep, _ := r.create(t, rc.URL, "order.*")
	r.clock.Advance(time.Minute) // the rig's clock started before since
	n, err := r.svc.Recover(t.Context(), r.tenant, ep.ID, since)
	if err != nil || n != 2 {
		t.Fatalf("recover: got %d, %v, want 2", n, err)
	}
	r.start()
	eventually(t, "both recovered events", func() bool { return len(rc.requests()) == 2 })
	got := map[string]bool{}
	for _, req := range rc.requests() {
		got[req.Header.Get("webhook-id")] = true
	}
	for _, id := range want {
		if !got[id] {
			t.Errorf("got webhook-ids %v, want %s among them", got, id)
		}
	}
	if _, err := r.svc.Recover(t.Context(), r.tenant, ep.ID, time.Now().Add(time.Hour)); err == nil {
		t.Error("recover from the future: got no error, want 422")
	}
}

// TestPrivateTargetsRefused: without WEBHOOK_ALLOW_PRIVATE, endpoints on
// loopback, private and link-local addresses (and http URLs) are refused
// when registered, and an endpoint that reaches one anyway (as a name
// resolving to it would) is refused at dial time: nothing is sent.
func TestPrivateTargetsRefused(t *testing.T) {
	r := newRig(t, func(o *webhooks.Options) { o.AllowPrivate = false })
	for _, u := range []string{"http://example.com/hook", "https://127.0.0.1/hook", "https://localhost/hook",
		"https://10.1.2.3/hook", "https://169.254.169.254/latest", "https://[::1]/hook", "https://2130706433/hook",
		"ftp://example.com", "https://user:pw@example.com/", "not a url"} {
		if _, _, err := r.svc.Create(t.Context(), r.tenant, webhooks.NewEndpoint{URL: u, EventTypes: []string{"*"}}); err == nil {
			t.Errorf("%s: got it registered, want refused", u)
		}
	}
	if _, _, err := r.svc.Create(t.Context(), r.tenant, webhooks.NewEndpoint{URL: "https://hooks.example.com/in", EventTypes: []string{"*"}}); err != nil {
		t.Errorf("a public https URL: %v, want registered", err)
	}

	rc := newReceiver(t, nil)
	ep, _ := r.create(t, "https://hooks.example.com/in")
	// As if the name resolved to loopback: the dial check still refuses.
	testenv.Exec(t, r.owner, r.tenant, `UPDATE webhook_endpoints SET url = ? WHERE tenant_id = ? AND id = ?`, rc.URL, r.tenant, ep.ID)
	r.start()
	r.sendTest(t, ep.ID)
	eventually(t, "the refused attempt is recorded", func() bool {
		ds := r.deliveries(t, ep.ID)
		return len(ds) == 1 && ds[0].Attempts == 1
	})
	d := r.deliveries(t, ep.ID)[0]
	if !strings.Contains(d.LastError, "netguard") || d.LastStatusCode != 0 {
		t.Errorf("got last error %q status %d, want a netguard refusal", d.LastError, d.LastStatusCode)
	}
	if n := len(rc.requests()); n != 0 {
		t.Errorf("got %d requests at the loopback receiver, want 0", n)
	}
}

// TestRedirectNotFollowed: a 3xx is recorded as a failure, never followed.
func TestRedirectNotFollowed(t *testing.T) {
	r := newRig(t, nil)
	target := newReceiver(t, nil)
	rc := newReceiver(t, func(w http.ResponseWriter, req *http.Request, _ []byte) {
		http.Redirect(w, req, target.URL, http.StatusTemporaryRedirect)
	})
	ep, _ := r.create(t, rc.URL)
	r.start()
	r.sendTest(t, ep.ID)
	eventually(t, "the attempt is recorded", func() bool { return r.deliveries(t, ep.ID)[0].Attempts == 1 })
	d := r.deliveries(t, ep.ID)[0]
	if d.LastStatusCode != http.StatusTemporaryRedirect || d.Status != webhooks.DeliveryPending {
		t.Errorf("got %d %s, want 307 and a retry pending", d.LastStatusCode, d.Status)
	}
	if n := len(target.requests()); n != 0 {
		t.Errorf("got %d requests at the redirect target, want 0", n)
	}
}

// TestCircuitBreakerOpens: after BreakerFailures consecutive failures the
// endpoint's breaker opens: due deliveries are put back without being sent
// or counted as attempts.
func TestCircuitBreakerOpens(t *testing.T) {
	r := newRig(t, func(o *webhooks.Options) { o.BreakerFailures = 2; o.BreakerOpen = time.Hour })
	rc, ep, _ := r.endpointTo(t, status(http.StatusInternalServerError))
	r.start()
	r.sendTest(t, ep.ID)
	eventually(t, "attempt 1", func() bool { return r.deliveries(t, ep.ID)[0].Attempts == 1 })
	r.clock.Advance(5 * time.Second)
	eventually(t, "attempt 2", func() bool { return r.deliveries(t, ep.ID)[0].Attempts == 2 })
	r.clock.Advance(5 * time.Minute)
	eventually(t, "the open breaker puts the delivery back", func() bool {
		d := r.deliveries(t, ep.ID)[0]
		return d.NextAttemptAt.Equal(r.clock.Now().Add(time.Hour))
	})
	d := r.deliveries(t, ep.ID)[0]
	if d.Attempts != 2 || len(rc.requests()) != 2 {
		t.Errorf("got %d attempts and %d requests, want 2 and 2 (nothing sent while open)", d.Attempts, len(rc.requests()))
	}
}

// TestSecretSealedAtRest: with a secret key the stored secret does not
// contain the signing key, and still signs after a restart (a new Service
// with the same key).
func TestSecretSealedAtRest(t *testing.T) {
	const key = "a-webhook-secret-key-of-at-least-32-chars"
	r := newRig(t, func(o *webhooks.Options) { o.SecretKey = key })
	rc, ep, secret := r.endpointTo(t, nil)
	raw, err := decodeSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	stored := testenv.Query[struct{ Secret []byte }](t, r.owner, r.tenant, `SELECT secret FROM webhook_endpoints WHERE tenant_id = ? AND id = ?`, r.tenant, ep.ID).Secret
	if len(stored) == 0 || strings.Contains(string(stored), string(raw)) {
		t.Fatalf("got the signing key in the stored secret, want it sealed")
	}
	r.start()
	r.sendTest(t, ep.ID)
	eventually(t, "the test event", func() bool { return len(rc.requests()) == 1 })
	if err := verify(t, secret, rc.requests()[0]); err != nil {
		t.Errorf("verify: %v", err)
	}
}

func TestBox(t *testing.T) {
	box, err := webhooks.NewBox("a-webhook-secret-key-of-at-least-32-chars")
	if err != nil {
		t.Fatal(err)
	}
	tenant, endpoint := uuid.New(), uuid.New()
	sealed, err := box.Seal(tenant, endpoint, []byte("signing key"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := box.Open(tenant, endpoint, sealed); err != nil || string(got) != "signing key" {
		t.Errorf("open: got %q %v, want the key", got, err)
	}
	if _, err := box.Open(tenant, uuid.New(), sealed); err == nil {
		t.Error("opened for another endpoint, want refused")
	}
	other, _ := webhooks.NewBox("another-webhook-secret-key-of-32-chars!")
	if _, err := other.Open(tenant, endpoint, sealed); err == nil {
		t.Error("opened with another key, want refused")
	}
	plain, _ := webhooks.NewBox("")
	if _, err := plain.Open(tenant, endpoint, sealed); err == nil {
		t.Error("opened a sealed key without the secret key, want refused")
	}
}

// TestUnreadableSecretFailsOnlyItsEndpoint: an endpoint whose stored
// secret cannot be opened (WEBHOOK_SECRET_KEY changed) gets failed
// attempts that say so, nothing is sent to it, and the other endpoints'
// deliveries go on; rotating its secret repairs it.
func TestUnreadableSecretFailsOnlyItsEndpoint(t *testing.T) {
	r := newRig(t, func(o *webhooks.Options) { o.SecretKey = "a-webhook-secret-key-of-at-least-32-chars" })
	bad, good := newReceiver(t, nil), newReceiver(t, nil)
	badEP, _ := r.create(t, bad.URL)
	goodEP, _ := r.create(t, good.URL)
	testenv.Exec(t, r.owner, r.tenant, `UPDATE webhook_endpoints SET secret = '\x01000000000000000000000000000000' WHERE tenant_id = ? AND id = ?`,
		r.tenant, badEP.ID)
	r.start()
	for _, id := range []uuid.UUID{badEP.ID, goodEP.ID} {
		r.sendTest(t, id)
	}
	eventually(t, "the good endpoint's delivery", func() bool { return len(good.requests()) == 1 })
	eventually(t, "the bad endpoint's failed attempt", func() bool { return r.deliveries(t, badEP.ID)[0].Attempts == 1 })
	if d := r.deliveries(t, badEP.ID)[0]; !strings.Contains(d.LastError, "rotate") || len(bad.requests()) != 0 {
		t.Fatalf("got last error %q and %d requests, want a failure naming the rotation and nothing sent", d.LastError, len(bad.requests()))
	}
	_, secret, err := r.svc.RotateSecret(t.Context(), r.tenant, badEP.ID)
	if err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(5 * time.Second)
	eventually(t, "the retry after the rotation", func() bool { return len(bad.requests()) == 1 })
	if err := verify(t, secret, bad.requests()[0]); err != nil {
		t.Errorf("verify with the new secret: %v", err)
	}
}

// TestOldDeliveriesAreTrimmed: finished deliveries past retention are
// removed (with their attempts) as the endpoint gets new ones; pending
// ones and recent ones stay.
func TestOldDeliveriesAreTrimmed(t *testing.T) {
	r := newRig(t, nil)
	_, ep, _ := r.endpointTo(t, nil)
	old := r.sendTest(t, ep.ID)
	r.start()
	eventually(t, "the first delivery", func() bool { return r.deliveries(t, ep.ID)[0].Status == webhooks.DeliverySucceeded })
	r.clock.Advance(31 * 24 * time.Hour)
	r.sendTest(t, ep.ID)
	eventually(t, "the old delivery is trimmed", func() bool {
		ds := r.deliveries(t, ep.ID)
		return len(ds) == 1 && ds[0].ID != old.ID && ds[0].Status == webhooks.DeliverySucceeded
	})
}

// TestSlowEndpointDoesNotHoldTheDispatcher: while an endpoint hangs on
// every request, events keep flowing through the dispatcher: the feed only
// enqueues, so the next events reach another endpoint at once.
func TestSlowEndpointDoesNotHoldTheDispatcher(t *testing.T) {
	r := newRig(t, func(o *webhooks.Options) { o.Now = nil })
	release := make(chan struct{})
	slow := newReceiver(t, func(w http.ResponseWriter, req *http.Request, _ []byte) {
		select {
		case <-release:
		case <-req.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	fast := newReceiver(t, nil)
	r.create(t, slow.URL, "*")
	r.create(t, fast.URL, "*")
	r.start()
	r.dispatch(t)

	start := time.Now()
	for i := range 5 {
		r.appendEvent(t, "slow-"+itoa(i), "thing.happened", map[string]int{"i": i})
	}
	eventually(t, "every event reaches the fast endpoint", func() bool { return len(fast.requests()) == 5 })
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the events took %s to reach the fast endpoint, want well under the slow one's timeout", took)
	}
	if n := len(slow.requests()); n > 2 {
		t.Errorf("got %d requests in flight to the slow endpoint, want at most 2", n)
	}
}
