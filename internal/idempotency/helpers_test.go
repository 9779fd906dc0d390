package idempotency_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/idempotency"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

// harness is a gin engine with a stand-in authenticator, the idempotency
// middleware over a store with a settable clock, and handlers that count
// how often they run and create a product each time they succeed.
type harness struct {
	app   *db.DB
	owner *db.DB
	store *idempotency.Store
	clock *testenv.Clock
	eng   *gin.Engine

	logs  *apptest.SyncBuffer // what the middleware logged, for tests that wait on it
	runs  atomic.Int64        // executions of any POST or GET handler
	delay time.Duration       // how long /v1/things takes
	// The first two /v1/blocks calls close entered[i] when they start and
	// wait for gate[i] to be closed; with firstFails the first then
	// answers 503.
	entered    [2]chan struct{}
	gate       [2]chan struct{}
	firstFails bool
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	gin.SetMode(gin.TestMode)
	env := testenv.Get(t)
	h := &harness{
		app:   env.OpenDB(t, 12),
		owner: env.OpenOwnerDB(t),
		clock: testenv.NewClock(time.Now().UTC()),
		logs:  &apptest.SyncBuffer{},
	}
	for i := range h.gate {
		h.entered[i], h.gate[i] = make(chan struct{}), make(chan struct{})
	}
	h.store = idempotency.NewStore(h.app, h.clock.Now)
	h.eng = h.engine(h.store)
	return h
}

// engine builds the chain: recovery ▸ principal ▸ idempotency ▸ handlers.
func (h *harness) engine(s *idempotency.Store) *gin.Engine {
	log := slog.New(slog.NewTextHandler(h.logs, nil))
	e := gin.New()
	e.ContextWithFallback = true
	e.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, _ any) {
		httpx.Fail(c, fault.Internal, "panic")
	}))
	e.Use(apptest.HeaderAuth)
	e.Use(middleware.Idempotency(s, log))
	e.POST("/v1/things", func(c *gin.Context) {
		n := h.runs.Add(1)
		if h.delay > 0 {
			time.Sleep(h.delay) // the point: a slow handler holds the key
		}
		h.create(c, n)
	})
	e.POST("/v1/other-things", func(c *gin.Context) { h.create(c, h.runs.Add(1)) })
	e.POST("/v1/flaky", func(c *gin.Context) {
		if n := h.runs.Add(1); n == 1 {
			httpx.Fail(c, fault.GatewayUnavailable, "the payment gateway did not answer")
		} else {
			h.create(c, n)
		}
	})
	e.POST("/v1/panics", func(c *gin.Context) {
		n := h.runs.Add(1)
		if n == 1 {
			panic("handler bug")
		}
		h.create(c, n)
	})
	e.POST("/v1/blocks", func(c *gin.Context) {
		n := h.runs.Add(1)
		if n <= 2 {
			close(h.entered[n-1])
			<-h.gate[n-1]
		}
		if n == 1 && h.firstFails {
			httpx.Fail(c, fault.GatewayUnavailable, "the payment gateway did not answer")
			return
		}
		h.create(c, n)
	})
	e.GET("/v1/things", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"run": h.runs.Add(1)})
	})
	return e
}

// waitLog waits up to 10s for the middleware to log a line containing msg.
func (h *harness) waitLog(t *testing.T, msg string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(h.logs.String(), msg), fmt.Sprintf("got no log line %q; logs:\n%s", msg, h.logs)
	})
}

// thing is the request and response body of the test handlers.
type thing struct {
	ID  uuid.UUID `json:"id,omitempty"`
	SKU string    `json:"sku"`
	Run int64     `json:"run,omitempty"`
}

// create inserts a product for the request's tenant (a side effect that must
// happen once per key) and answers 201 with Location and ETag; sku "taken"
// gets a 409 instead.
func (h *harness) create(c *gin.Context, run int64) {
	var in thing
	if err := httpx.BindJSON(c, &in); err != nil {
		httpx.Error(c, err)
		return
	}
	if in.SKU == "taken" {
		httpx.Fail(c, fault.Conflict, "sku taken")
		return
	}
	p, _ := identity.FromContext(c.Request.Context())
	id := uuid.New()
	err := h.app.WithTenant(c.Request.Context(), p.TenantID, func(tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
			VALUES (?, ?, ?, 'Thing', 100, 'EUR', 1)`, p.TenantID, id, in.SKU+"-"+id.String()[:8]).Error
	})
	if err != nil {
		httpx.Error(c, err)
		return
	}
	c.Header("Location", "/v1/things/"+id.String())
	c.Header("ETag", `"`+strconv.FormatInt(run, 10)+`"`)
	c.JSON(http.StatusCreated, thing{ID: id, SKU: in.SKU, Run: run})
}

// request is one request of a test.
type request struct {
	method  string // default POST
	path    string // default /v1/things
	tenant  uuid.UUID
	subject string
	keys    []string // Idempotency-Key values; none when nil
	body    string
}

// key returns the keys slice for one Idempotency-Key value.
func key(k string) []string { return []string{k} }

func (h *harness) do(t *testing.T, r request) *httptest.ResponseRecorder {
	t.Helper()
	return serve(t, h.eng, r)
}

func serve(t *testing.T, e *gin.Engine, r request) *httptest.ResponseRecorder {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/v1/things"
	}
	req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	req.Header.Set("Content-Type", "application/json")
	if r.tenant != uuid.Nil {
		req.Header.Set(apptest.TenantHeader, r.tenant.String())
	}
	if r.subject != "" {
		req.Header.Set(apptest.SubjectHeader, r.subject)
	}
	for _, k := range r.keys {
		req.Header.Add(idempotency.Header, k)
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	return w
}

// wantProducts fails t unless the tenant has want products whose sku
// starts with sku+"-".
func (h *harness) wantProducts(t *testing.T, tenantID uuid.UUID, sku string, want int64) {
	t.Helper()
	if n := testenv.Query[int64](t, h.app, tenantID, "SELECT count(*) FROM products WHERE starts_with(sku, ?)", sku+"-"); n != want {
		t.Errorf("got %d products, want %d", n, want)
	}
}

// keyCount counts the tenant's idempotency keys as the runtime role sees them.
func keyCount(t *testing.T, d *db.DB, tenantID uuid.UUID) int64 {
	t.Helper()
	return testenv.Query[int64](t, d, tenantID, "SELECT count(*) FROM idempotency_keys")
}

// newKey returns a fresh Idempotency-Key.
func newKey(t testing.TB) string { return "key-" + testenv.RandomHex(8) }

// codeOf returns the problem+json code of a response, or "".
func codeOf(w *httptest.ResponseRecorder) string {
	return apptest.Response{Body: w.Body.Bytes()}.Code()
}

// fieldsOf returns the fields a problem+json response blames.
func fieldsOf(w *httptest.ResponseRecorder) []string {
	var p struct {
		Errors []struct {
			Field string `json:"field"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		return nil
	}
	var out []string
	for _, e := range p.Errors {
		out = append(out, e.Field)
	}
	return out
}

// replayed reports whether w carries Idempotent-Replayed: true.
func replayed(w *httptest.ResponseRecorder) bool {
	return w.Header().Get(idempotency.ReplayedHeader) == "true"
}

// wantSame fails t unless got repeats want: status, body byte for byte and
// the stored headers.
func wantSame(t *testing.T, got, want *httptest.ResponseRecorder) {
	t.Helper()
	if got.Code != want.Code {
		t.Errorf("got status %d, want %d", got.Code, want.Code)
	}
	if got.Body.String() != want.Body.String() {
		t.Errorf("got body %q, want %q", got.Body.String(), want.Body.String())
	}
	for _, hdr := range []string{"Content-Type", "Location", "ETag"} {
		if g, w := got.Header().Get(hdr), want.Header().Get(hdr); g != w {
			t.Errorf("got %s %q, want %q", hdr, g, w)
		}
	}
}

// wantReplay sends r and fails t unless the answer is a replay of want
// (see wantSame); what names the request in a failure.
func (h *harness) wantReplay(t *testing.T, what string, r request, want *httptest.ResponseRecorder) {
	t.Helper()
	w := h.do(t, r)
	if !replayed(w) {
		t.Errorf("%s: got replayed false (%d %s), want true", what, w.Code, w.Body)
	}
	wantSame(t, w, want)
}

// wantRuns fails t unless the handler ran n times.
func (h *harness) wantRuns(t *testing.T, n int64) {
	t.Helper()
	if got := h.runs.Load(); got != n {
		t.Errorf("got %d handler runs, want %d", got, n)
	}
}
