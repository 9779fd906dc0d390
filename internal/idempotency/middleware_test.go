package idempotency_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/idempotency"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestPassThrough proves requests the contract does not cover run their
// handler every time, untouched: POST without the header, and GET with any
// header, valid or not.
func TestPassThrough(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tenant := testenv.NewTenant(t).ID
	tests := []struct {
		name string
		req  request
	}{
		{"POST without key", request{tenant: tenant, body: `{"sku":"plain"}`}},
		{"GET with key", request{method: http.MethodGet, tenant: tenant, keys: key(newKey(t))}},
		{"GET with invalid key", request{method: http.MethodGet, tenant: tenant, keys: key("bad key\x01")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.runs.Load()
			first, second := h.do(t, tt.req), h.do(t, tt.req)
			if got, want := h.runs.Load()-before, int64(2); got != want {
				t.Errorf("got %d handler runs, want %d", got, want)
			}
			for i, w := range []*httptest.ResponseRecorder{first, second} {
				if w.Code >= 300 {
					t.Errorf("request %d: got status %d (%s), want success", i+1, w.Code, w.Body)
				}
				if replayed(w) {
					t.Errorf("request %d: got %s: true, want no replay", i+1, idempotency.ReplayedHeader)
				}
			}
			if first.Body.String() == second.Body.String() {
				t.Errorf("got the same body %q twice, want two executions", first.Body)
			}
		})
	}
	h.wantProducts(t, tenant, "plain", 2)
}

// TestReplay proves a repeat with the same key and body gets the first
// response again, byte for byte, marked replayed, without running the
// handler; a different body or path under the key gets 422.
func TestReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tenant := testenv.NewTenant(t).ID
	k := newKey(t)
	original := request{tenant: tenant, keys: key(k), body: `{"sku":"pay"}`}

	first := h.do(t, original)
	if first.Code != http.StatusCreated {
		t.Fatalf("got status %d (%s), want 201", first.Code, first.Body)
	}
	if replayed(first) {
		t.Errorf("first response: got %s: true, want it absent", idempotency.ReplayedHeader)
	}
	if first.Header().Get("Location") == "" || first.Header().Get("ETag") == "" {
		t.Fatalf("got Location %q and ETag %q, want both set by the handler", first.Header().Get("Location"), first.Header().Get("ETag"))
	}

	tests := []struct {
		name         string
		req          request
		wantStatus   int
		wantCode     string
		wantReplayed bool
	}{
		{"same key and body", original, http.StatusCreated, "", true},
		{"same key and body again", original, http.StatusCreated, "", true},
		{"same key, different body", request{tenant: tenant, keys: key(k), body: `{"sku":"other"}`},
			http.StatusUnprocessableEntity, "idempotency_key_reused", false},
		{"same key, body with other spacing", request{tenant: tenant, keys: key(k), body: `{"sku": "pay"}`},
			http.StatusUnprocessableEntity, "idempotency_key_reused", false},
		{"same key and body, different path", request{path: "/v1/other-things", tenant: tenant, keys: key(k), body: `{"sku":"pay"}`},
			http.StatusUnprocessableEntity, "idempotency_key_reused", false},
		{"same key and body after the misuses", original, http.StatusCreated, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := h.do(t, tt.req)
			if w.Code != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", w.Code, w.Body, tt.wantStatus)
			}
			if got := codeOf(w); got != tt.wantCode {
				t.Errorf("got code %q, want %q", got, tt.wantCode)
			}
			if got := replayed(w); got != tt.wantReplayed {
				t.Errorf("got replayed %v, want %v", got, tt.wantReplayed)
			}
			if tt.wantReplayed {
				wantSame(t, w, first)
			}
		})
	}
	h.wantRuns(t, 1)
	h.wantProducts(t, tenant, "pay", 1)
}

// TestClientErrorsAreStored proves a 4xx answer is part of the key's
// outcome: a repeat gets it again without running the handler.
func TestClientErrorsAreStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := request{tenant: testenv.NewTenant(t).ID, keys: key(newKey(t)), body: `{"sku":"taken"}`}
	first := h.do(t, r)
	if first.Code != http.StatusConflict {
		t.Fatalf("got status %d (%s), want 409", first.Code, first.Body)
	}
	h.wantReplay(t, "repeat", r, first)
	h.wantRuns(t, 1)
}

// TestConcurrentSameKey proves that of 20 simultaneous requests with one key
// and body, the handler runs once: one gets the original 201, the others a
// 409 conflict with Retry-After (or, if they arrive after it finished, the
// replayed 201); a later request gets the replay.
func TestConcurrentSameKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.delay = 200 * time.Millisecond
	tenant := testenv.NewTenant(t).ID
	r := request{tenant: tenant, keys: key(newKey(t)), body: `{"sku":"race"}`}

	const n = 20
	responses := make([]*httptest.ResponseRecorder, n)
	testenv.Race(n, func(i int) error {
		responses[i] = h.do(t, r)
		return nil
	})

	var original *httptest.ResponseRecorder
	var created, conflicts int
	for i, w := range responses {
		switch {
		case w.Code == http.StatusCreated:
			created++
			if !replayed(w) {
				if original != nil {
					t.Errorf("response %d: got a second original 201, want one", i)
				}
				original = w
			}
		case w.Code == http.StatusConflict && codeOf(w) == "conflict":
			conflicts++
			if got := w.Header().Get("Retry-After"); got != "1" {
				t.Errorf("response %d: got Retry-After %q, want \"1\"", i, got)
			}
		default:
			t.Errorf("response %d: got status %d (%s), want 201 or 409 conflict", i, w.Code, w.Body)
		}
	}
	if original == nil {
		t.Fatalf("got no original 201 among %d created and %d conflicts, want one", created, conflicts)
	}
	for i, w := range responses {
		if w.Code == http.StatusCreated {
			if w.Body.String() != original.Body.String() {
				t.Errorf("response %d: got body %q, want %q", i, w.Body, original.Body)
			}
		}
	}
	if conflicts == 0 {
		t.Errorf("got no 409 among %d requests, want the ones sent while the first ran", n)
	}
	h.wantRuns(t, 1)
	h.wantReplay(t, "later request", r, original)
	h.wantProducts(t, tenant, "race", 1)
}

// TestServerErrorReleasesKey proves a 5xx answer or a panic leaves the key
// free: the retry runs the handler, and the retry's answer is kept.
func TestServerErrorReleasesKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		path       string
		wantStatus int
	}{
		{"503 from the handler", "/v1/flaky", http.StatusServiceUnavailable},
		{"panic in the handler", "/v1/panics", http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			tenant := testenv.NewTenant(t).ID
			r := request{path: tt.path, tenant: tenant, keys: key(newKey(t)), body: `{"sku":"retry"}`}

			first := h.do(t, r)
			if first.Code != tt.wantStatus {
				t.Fatalf("first: got status %d (%s), want %d", first.Code, first.Body, tt.wantStatus)
			}
			if got := keyCount(t, h.app, tenant); got != 0 {
				t.Errorf("after the failure: got %d stored keys, want 0", got)
			}
			retry := h.do(t, r)
			if retry.Code != http.StatusCreated || replayed(retry) {
				t.Fatalf("retry: got status %d replayed=%v (%s), want a fresh 201", retry.Code, replayed(retry), retry.Body)
			}
			h.wantReplay(t, "third", r, retry)
			h.wantRuns(t, 2)
			h.wantProducts(t, tenant, "retry", 1)
		})
	}
}

// TestExpiry proves a key is kept for 24 hours and then is free again, for
// the same request or a different one.
func TestExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tenant := testenv.NewTenant(t).ID
	k := newKey(t)
	same := request{tenant: tenant, keys: key(k), body: `{"sku":"expiry"}`}
	other := request{tenant: tenant, keys: key(k), body: `{"sku":"expiry-other"}`}

	steps := []struct {
		name         string
		advance      time.Duration
		req          request
		wantStatus   int
		wantReplayed bool
		wantRuns     int64
	}{
		{"first", 0, same, http.StatusCreated, false, 1},
		{"a second before 24 h", idempotency.Retention - time.Second, same, http.StatusCreated, true, 1},
		{"other body a second before 24 h", 0, other, http.StatusUnprocessableEntity, false, 1},
		{"a second after 24 h", 2 * time.Second, same, http.StatusCreated, false, 2},
		{"replay of the new response", 0, same, http.StatusCreated, true, 2},
		{"other body 24 h later", idempotency.Retention, other, http.StatusCreated, false, 3},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			h.clock.Advance(s.advance)
			w := h.do(t, s.req)
			if w.Code != s.wantStatus {
				t.Fatalf("got status %d (%s), want %d", w.Code, w.Body, s.wantStatus)
			}
			if got := replayed(w); got != s.wantReplayed {
				t.Errorf("got replayed %v, want %v", got, s.wantReplayed)
			}
			h.wantRuns(t, s.wantRuns)
		})
	}
}

// TestScope proves keys are scoped to tenant and credential: the same key
// from another tenant or another credential is a new request, even with a
// different body, and each gets its own response replayed.
func TestScope(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a, b := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	k := newKey(t)
	reqs := []struct {
		name string
		req  request
	}{
		{"tenant A, credential 1", request{tenant: a, subject: "key-1", keys: key(k), body: `{"sku":"scope-a1"}`}},
		{"tenant B, credential 1", request{tenant: b, subject: "key-1", keys: key(k), body: `{"sku":"scope-b1"}`}},
		{"tenant A, credential 2", request{tenant: a, subject: "key-2", keys: key(k), body: `{"sku":"scope-a2"}`}},
		{"tenant B, credential 2, same body as B1", request{tenant: b, subject: "key-2", keys: key(k), body: `{"sku":"scope-b1"}`}},
	}
	firsts := make([]*httptest.ResponseRecorder, len(reqs))
	for i, r := range reqs {
		t.Run(r.name+" first", func(t *testing.T) {
			w := h.do(t, r.req)
			if w.Code != http.StatusCreated || replayed(w) {
				t.Fatalf("got status %d replayed=%v (%s), want a fresh 201", w.Code, replayed(w), w.Body)
			}
			firsts[i] = w
		})
	}
	for i, r := range reqs {
		t.Run(r.name+" repeat", func(t *testing.T) {
			w := h.do(t, r.req)
			if !replayed(w) {
				t.Errorf("got replayed false, want true")
			}
			if firsts[i] != nil {
				wantSame(t, w, firsts[i])
			}
		})
	}
	if got, want := h.runs.Load(), int64(len(reqs)); got != want {
		t.Errorf("got %d handler runs, want %d", got, want)
	}
	if got := keyCount(t, h.app, a); got != 2 {
		t.Errorf("tenant A: got %d keys, want 2", got)
	}
}

// TestInvalidKey proves a malformed Idempotency-Key on a POST is a 422
// naming the header, and the handler does not run.
func TestInvalidKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tenant := testenv.NewTenant(t).ID
	tests := []struct {
		name       string
		keys       []string
		wantStatus int
	}{
		{"empty", key(""), http.StatusUnprocessableEntity},
		{"256 characters", key(strings.Repeat("k", 256)), http.StatusUnprocessableEntity},
		{"control character", key("abc\x01def"), http.StatusUnprocessableEntity},
		{"tab", key("abc\tdef"), http.StatusUnprocessableEntity},
		{"space", key("abc def"), http.StatusUnprocessableEntity},
		{"DEL", key("abc\x7f"), http.StatusUnprocessableEntity},
		{"non-ASCII", key("schlüssel"), http.StatusUnprocessableEntity},
		{"given twice", []string{"one", "two"}, http.StatusUnprocessableEntity},
		{"255 characters", key(strings.Repeat("k", 255)), http.StatusCreated},
		{"one character", key("!"), http.StatusCreated},
		{"punctuation", key("~a:b/c=d+e_f!"), http.StatusCreated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.runs.Load()
			w := h.do(t, request{tenant: tenant, keys: tt.keys, body: `{"sku":"invalid"}`})
			if w.Code != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", w.Code, w.Body, tt.wantStatus)
			}
			runs := h.runs.Load() - before
			if tt.wantStatus != http.StatusUnprocessableEntity {
				if runs != 1 {
					t.Errorf("got %d handler runs, want 1", runs)
				}
				return
			}
			if runs != 0 {
				t.Errorf("got %d handler runs, want 0", runs)
			}
			if got := codeOf(w); got != "validation_failed" {
				t.Errorf("got code %q, want validation_failed", got)
			}
			if got := fieldsOf(w); !slices.Equal(got, []string{idempotency.Header}) {
				t.Errorf("got fields %v, want [%s]", got, idempotency.Header)
			}
		})
	}
}

// TestNoPrincipal proves the middleware fails closed when wired where no
// tenant principal is known, instead of running the handler without the
// guarantee the client asked for.
func TestNoPrincipal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := h.do(t, request{keys: key(newKey(t)), body: `{"sku":"anonymous"}`})
	if w.Code != http.StatusInternalServerError {
		t.Errorf("got status %d (%s), want 500", w.Code, w.Body)
	}
	h.wantRuns(t, 0)
	if strings.Contains(w.Body.String(), "principal") {
		t.Errorf("got body %q, want no internals", w.Body)
	}
}

// TestHandlerSeesBody proves the handler reads the same body the middleware
// hashed.
func TestHandlerSeesBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w := h.do(t, request{tenant: testenv.NewTenant(t).ID, keys: key(newKey(t)), body: `{"sku":"echo"}`})
	if w.Code != http.StatusCreated {
		t.Fatalf("got status %d (%s), want 201", w.Code, w.Body)
	}
	if !strings.Contains(w.Body.String(), `"sku":"echo"`) {
		t.Errorf("got body %q, want the sku echoed", w.Body)
	}
}
