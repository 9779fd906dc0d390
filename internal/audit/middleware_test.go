package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

// Test request headers besides apptest.HeaderAuth's: another tenant a
// handler may write to, and whether a middleware before Bind writes (as
// idempotency claims do).
const (
	otherHeader = "X-Test-Other"
	claimHeader = "X-Test-Claim"
)

// mwHarness is a gin engine with the audit chain as app.go wires it:
// recovery ▸ Origins ▸ principal ▸ /v1 group [Audit ▸ claiming
// middleware ▸ AuditBind] ▸ handlers that write products.
type mwHarness struct {
	app   *db.DB
	owner *db.DB
	eng   *gin.Engine
}

func newMWHarness(t *testing.T) *mwHarness {
	t.Helper()
	gin.SetMode(gin.TestMode)
	env := testenv.Get(t)
	h := &mwHarness{app: env.OpenDB(t, 8), owner: env.OpenOwnerDB(t)}
	aud := audit.New(h.app, testenv.Logger(), audit.Options{})
	h.app.SetBeforeCommit(aud.BeforeCommit)

	e := gin.New()
	e.ContextWithFallback = true
	e.Use(gin.CustomRecoveryWithWriter(io.Discard, func(c *gin.Context, _ any) { httpx.Fail(c, fault.Internal, "panic") }))
	e.Use(middleware.Origins(aud))
	e.Use(apptest.HeaderAuth)
	v1 := e.Group("/v1", middleware.Audit(aud), func(c *gin.Context) {
		if c.GetHeader(claimHeader) != "" {
			if err := h.insert(c, tenantOf(c), "claim"); err != nil {
				httpx.Error(c, err)
				return
			}
		}
		c.Next()
	}, middleware.AuditBind(aud))

	v1.POST("/things", func(c *gin.Context) {
		var in struct {
			SKU      string `json:"sku"`
			Password string `json:"password"`
		}
		if err := httpx.BindJSON(c, &in); err != nil {
			httpx.Error(c, err)
			return
		}
		if err := h.insert(c, tenantOf(c), in.SKU); err != nil {
			httpx.Error(c, err)
			return
		}
		c.Status(http.StatusCreated)
	})
	v1.DELETE("/things/:id", func(c *gin.Context) {
		err := h.app.WithTenant(c.Request.Context(), tenantOf(c), func(tx *gorm.DB) error {
			return tx.Exec("DELETE FROM products WHERE id = ?", c.Param("id")).Error
		})
		if err != nil {
			httpx.Error(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	})
	// A write and a security event, then a failure: the transaction rolls
	// back with both.
	v1.POST("/record-then-rollback", func(c *gin.Context) {
		tenantID := tenantOf(c)
		err := h.app.WithTenant(c.Request.Context(), tenantID, func(tx *gorm.DB) error {
			if err := tx.Exec(insertProduct, tenantID, uuid.New(), "rolled-back").Error; err != nil {
				return err
			}
			if err := audit.Record(c.Request.Context(), tx, tenantID, audit.Entry{Action: "thing.created"}); err != nil {
				return err
			}
			return errors.New("a later step failed")
		})
		httpx.Error(c, err)
	})
	v1.POST("/read-then-write", func(c *gin.Context) {
		err := h.app.WithTenant(c.Request.Context(), tenantOf(c), func(tx *gorm.DB) error {
			var n int64
			return tx.Raw("SELECT count(*) FROM products").Scan(&n).Error
		})
		if err == nil {
			err = h.insert(c, tenantOf(c), "afterread")
		}
		if err != nil {
			httpx.Error(c, err)
			return
		}
		c.Status(http.StatusCreated)
	})
	v1.POST("/write-then-fail", func(c *gin.Context) {
		if err := h.insert(c, tenantOf(c), "committed"); err != nil {
			httpx.Error(c, err)
			return
		}
		httpx.Fail(c, fault.GatewayUnavailable, "the gateway did not answer")
	})
	v1.POST("/parallel", func(c *gin.Context) {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Go(func() { errs[i] = h.insert(c, tenantOf(c), "parallel") })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			httpx.Error(c, err)
			return
		}
		c.Status(http.StatusCreated)
	})
	v1.POST("/elsewhere", func(c *gin.Context) {
		if err := h.insert(c, uuid.MustParse(c.GetHeader(otherHeader)), "elsewhere"); err != nil {
			httpx.Error(c, err)
			return
		}
		c.Status(http.StatusCreated)
	})
	v1.POST("/invalid", func(c *gin.Context) {
		httpx.Error(c, fault.Invalid(fault.Field("sku", "is required")))
	})
	v1.POST("/panics", func(*gin.Context) { panic("handler bug") })
	// As the idempotency middleware answers a repeat: the stored response.
	v1.POST("/replayed", func(c *gin.Context) {
		c.Header("Idempotent-Replayed", "true")
		c.Status(http.StatusCreated)
	})
	// A GET that writes is still not audited.
	v1.GET("/things", func(c *gin.Context) {
		if err := h.insert(c, tenantOf(c), "read"); err != nil {
			httpx.Error(c, err)
			return
		}
		c.Status(http.StatusOK)
	})
	h.eng = e
	return h
}

const insertProduct = `INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
	VALUES (?, ?, ?, 'Thing', 100, 'EUR', 1)`

func tenantOf(c *gin.Context) uuid.UUID {
	p, _ := identity.FromContext(c.Request.Context())
	return p.TenantID
}

// insert writes a product with a sku starting with prefix, in a
// transaction of its own.
func (h *mwHarness) insert(c *gin.Context, tenantID uuid.UUID, prefix string) error {
	return h.app.WithTenant(c.Request.Context(), tenantID, func(tx *gorm.DB) error {
		return tx.Exec(insertProduct, tenantID, uuid.New(), prefix+"-"+uuid.NewString()[:8]).Error
	})
}

// xmins returns the transaction ids that wrote the tenant's products, by
// sku prefix, and its audit events, by seq (read as the owner; an event's
// txid, as sealing rewrites its xmin, cut to the 32 bits xmin has).
func (h *mwHarness) xmins(t *testing.T, tenantID uuid.UUID) (products map[string][]string, events map[int64]string) {
	t.Helper()
	products, events = map[string][]string{}, map[int64]string{}
	err := h.owner.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error {
		var ps []struct{ SKU, Xmin string }
		if err := tx.Raw("SELECT sku, xmin::text AS xmin FROM products WHERE tenant_id = ? ORDER BY sku", tenantID).Scan(&ps).Error; err != nil {
			return err
		}
		for _, p := range ps {
			prefix, _, _ := strings.Cut(p.SKU, "-")
			products[prefix] = append(products[prefix], p.Xmin)
		}
		var es []struct {
			Seq  int64
			Xmin string
		}
		if err := tx.Raw("SELECT seq, (txid::text::bigint & 4294967295)::text AS xmin FROM audit_events WHERE tenant_id = ?", tenantID).Scan(&es).Error; err != nil {
			return err
		}
		for _, e := range es {
			events[e.Seq] = e.Xmin
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read xmins: %v", err)
	}
	return products, events
}

// entry is the part of a request entry a test checks.
type entry struct {
	Action   string
	Resource string
	Status   int
	Phase    string
	Fields   string // comma-separated field names
	Replayed bool
}

func entryOf(t *testing.T, e audit.Event) entry {
	t.Helper()
	var s struct {
		Phase    string   `json:"phase"`
		Fields   []string `json:"fields"`
		Replayed bool     `json:"replayed"`
	}
	if err := json.Unmarshal(e.Summary, &s); err != nil {
		t.Fatalf("summary %s: %v", e.Summary, err)
	}
	return entry{Action: e.Action, Resource: e.Resource, Status: e.Status, Phase: s.Phase, Fields: strings.Join(s.Fields, ","), Replayed: s.Replayed}
}

// TestMiddleware proves every mutating request gets its entry, written with
// its first committed write when there is one and after the response
// otherwise, and that GET requests get none.
func TestMiddleware(t *testing.T) {
	t.Parallel()
	h := newMWHarness(t)
	thingID := uuid.NewString()

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		claim      bool // a middleware before Bind writes first
		other      bool // the handler writes to another tenant
		wantStatus int
		want       []entry
		// sameTx names the product whose transaction must also have written
		// the first entry ("" when no entry may share one).
		sameTx       string
		wantProducts map[string]int
	}{
		{
			name: "write commits with its entry", method: "POST", path: "/v1/things",
			body: `{"sku":"made","password":"hunter2"}`, wantStatus: 201,
			want:   []entry{{"POST /v1/things", "/v1/things", 0, audit.PhaseCommit, "password,sku", false}},
			sameTx: "made", wantProducts: map[string]int{"made": 1},
		},
		{
			name: "route template and path", method: "DELETE", path: "/v1/things/" + thingID, wantStatus: 204,
			// Deleting nothing writes nothing: the entry comes after the response.
			want: []entry{{"DELETE /v1/things/:id", "/v1/things/" + thingID, 204, audit.PhaseResponse, "", false}},
		},
		{
			name: "rolled back with the security event, then recorded with the failure", method: "POST",
			path: "/v1/record-then-rollback", wantStatus: 500,
			want: []entry{{"POST /v1/record-then-rollback", "/v1/record-then-rollback", 500, audit.PhaseResponse, "", false}},
		},
		{
			name: "a read-only transaction does not carry the entry", method: "POST", path: "/v1/read-then-write", wantStatus: 201,
			want:   []entry{{"POST /v1/read-then-write", "/v1/read-then-write", 0, audit.PhaseCommit, "", false}},
			sameTx: "afterread", wantProducts: map[string]int{"afterread": 1},
		},
		{
			name: "middleware writes before Bind do not carry the entry", method: "POST", path: "/v1/things",
			body: `{"sku":"bound"}`, claim: true, wantStatus: 201,
			want:   []entry{{"POST /v1/things", "/v1/things", 0, audit.PhaseCommit, "sku", false}},
			sameTx: "bound", wantProducts: map[string]int{"bound": 1, "claim": 1},
		},
		{
			name: "committed, then failed: both entries", method: "POST", path: "/v1/write-then-fail", wantStatus: 503,
			want: []entry{
				{"POST /v1/write-then-fail", "/v1/write-then-fail", 0, audit.PhaseCommit, "", false},
				{"POST /v1/write-then-fail", "/v1/write-then-fail", 503, audit.PhaseResponse, "", false},
			},
			sameTx: "committed", wantProducts: map[string]int{"committed": 1},
		},
		{
			name: "two concurrent transactions, one entry", method: "POST", path: "/v1/parallel", wantStatus: 201,
			want:   []entry{{"POST /v1/parallel", "/v1/parallel", 0, audit.PhaseCommit, "", false}},
			sameTx: "parallel", wantProducts: map[string]int{"parallel": 2},
		},
		{
			name: "a write in another tenant does not carry the entry", method: "POST", path: "/v1/elsewhere", other: true, wantStatus: 201,
			want: []entry{{"POST /v1/elsewhere", "/v1/elsewhere", 201, audit.PhaseResponse, "", false}},
		},
		{
			name: "refused before any write", method: "POST", path: "/v1/invalid", body: `{"name":"x","a\u0000b":1,"nested":{"secret":"s"}}`, wantStatus: 422,
			want: []entry{{"POST /v1/invalid", "/v1/invalid", 422, audit.PhaseResponse, "?,name,nested", false}},
		},
		{
			name: "malformed body still audited", method: "POST", path: "/v1/things", body: `{"sku":`, wantStatus: 422,
			want: []entry{{"POST /v1/things", "/v1/things", 422, audit.PhaseResponse, "", false}},
		},
		{
			name: "panic", method: "POST", path: "/v1/panics", wantStatus: 500,
			want: []entry{{"POST /v1/panics", "/v1/panics", 500, audit.PhaseResponse, "", false}},
		},
		{
			name: "replayed response", method: "POST", path: "/v1/replayed", body: `{"sku":"again"}`, wantStatus: 201,
			want: []entry{{"POST /v1/replayed", "/v1/replayed", 201, audit.PhaseResponse, "sku", true}},
		},
		{
			name: "GET writes but is not audited", method: "GET", path: "/v1/things", wantStatus: 200,
			wantProducts: map[string]int{"read": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tn, other := testenv.NewTenant(t), testenv.NewTenant(t)
			var body *strings.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			} else {
				body = strings.NewReader("")
			}
			req := httptest.NewRequest(tt.method, tt.path, body)
			req.Header.Set(apptest.TenantHeader, tn.ID.String())
			req.Header.Set(otherHeader, other.ID.String())
			req.Header.Set("X-Request-ID", "req-"+tt.name[:4])
			req.Header.Set("User-Agent", "mw-test/1")
			if tt.claim {
				req.Header.Set(claimHeader, "1")
			}
			w := httptest.NewRecorder()
			h.eng.ServeHTTP(w, req)
			if w.Code != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", w.Code, w.Body, tt.wantStatus)
			}

			evs := events(t, h.app, tn.ID)
			got := make([]entry, len(evs))
			for i, e := range evs {
				got[i] = entryOf(t, e)
				if e.Actor != "api_key:key-1" || e.IP != "192.0.2.1" || e.UserAgent != "mw-test/1" || e.RequestID != "req-"+tt.name[:4] {
					t.Errorf("seq %d: got actor %q, ip %q, user agent %q, request id %q; want api_key:key-1, 192.0.2.1, mw-test/1, %q",
						e.Seq, e.Actor, e.IP, e.UserAgent, e.RequestID, "req-"+tt.name[:4])
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got entries %+v, want %+v", got, tt.want)
			}
			if evs := events(t, h.app, other.ID); len(evs) != 0 {
				t.Errorf("got %d entries in the other tenant's chain, want 0", len(evs))
			}

			products, xmins := h.xmins(t, tn.ID)
			for prefix, n := range tt.wantProducts {
				if len(products[prefix]) != n {
					t.Errorf("got %d %q products, want %d", len(products[prefix]), prefix, n)
				}
			}
			for prefix := range products {
				if tt.wantProducts[prefix] == 0 {
					t.Errorf("got %q products %v, want none", prefix, products[prefix])
				}
			}
			if tt.sameTx != "" {
				if len(evs) == 0 {
					t.Fatal("got no entry, want one written with the product")
				}
				if !slices.Contains(products[tt.sameTx], xmins[evs[0].Seq]) {
					t.Errorf("entry seq %d written by transaction %s, want one of the %q products' %v",
						evs[0].Seq, xmins[evs[0].Seq], tt.sameTx, products[tt.sameTx])
				}
			}
			if r, err := audit.Verify(t.Context(), h.app, tn.ID); err != nil || !r.OK() {
				t.Errorf("got report %+v, error %v; want an intact chain", r, err)
			}
		})
	}
}

// logRecorder keeps the messages of every record logged, debug included.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// count returns how many messages contain s.
func (r *logRecorder) count(s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// TestResponseEntryRetried proves a "response" entry whose write fails on a
// transient error (here lock timeouts: the tenant's row, which the entry's
// foreign key check reads, is locked) is written by a later attempt once
// the cause is gone, not logged as lost.
func TestResponseEntryRetried(t *testing.T) {
	t.Parallel()
	gin.SetMode(gin.TestMode)
	env := testenv.Get(t)
	app, err := db.Open(t.Context(), env.AppURL, db.Options{MaxConns: 4, LockTimeout: 50 * time.Millisecond, WorkerURL: env.WorkerURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	su := openSuperuser(t, env)
	tn := testenv.NewTenant(t)
	logs := &logRecorder{}
	aud := audit.New(app, slog.New(logs), audit.Options{})
	e := gin.New()
	e.Use(func(c *gin.Context) {
		p := identity.Principal{Kind: identity.KindAPIKey, TenantID: tn.ID, Subject: "key-1"}
		c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
		c.Next()
	})
	e.Group("/v1", middleware.Audit(aud)).POST("/invalid", func(c *gin.Context) {
		httpx.Error(c, fault.Invalid(fault.Field("sku", "is required")))
	})

	lock := su.Unscoped(t.Context()).Begin()
	if err := lock.Exec("SELECT 1 FROM tenants WHERE id = ? FOR UPDATE", tn.ID).Error; err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	served := make(chan struct{})
	go func() {
		defer close(served)
		e.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/invalid", strings.NewReader("{}")))
	}()
	testenv.Eventually(t, 5*time.Second, func() (bool, string) { return logs.count("retrying") >= 2, "a failed attempt retried" })
	if err := lock.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	<-served
	if w.Code != http.StatusUnprocessableEntity {
		t.Fatalf("got status %d, want 422", w.Code)
	}
	evs := events(t, app, tn.ID)
	if len(evs) != 1 || entryOf(t, evs[0]) != (entry{"POST /v1/invalid", "/v1/invalid", 422, audit.PhaseResponse, "", false}) {
		t.Errorf("got %+v, want the request's response entry once", evs)
	}
	if n := logs.count("not in the audit trail"); n != 0 {
		t.Errorf("got %d entries logged as lost, want 0", n)
	}
}
