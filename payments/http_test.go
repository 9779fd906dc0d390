package payments_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/payments"
)

// testTenantHeader names the tenant the test authorizer signs requests in
// as; without it a request carries no principal.
const testTenantHeader = "X-Test-Tenant"

// server is the payment routes on a gin engine with a stand-in authorizer.
type server struct {
	fixture
	engine *gin.Engine
	table  *httpx.Table
}

func newServer(t *testing.T) server {
	t.Helper()
	return newServerOn(t, newFixture(t, 4))
}

func newServerOn(t *testing.T, f fixture) server {
	t.Helper()
	gin.SetMode(gin.TestMode)
	engine := gin.New()
	table := &httpx.Table{}
	authorize := func(string) gin.HandlerFunc {
		return func(c *gin.Context) {
			if raw := c.GetHeader(testTenantHeader); raw != "" {
				p := identity.Principal{Kind: identity.KindAPIKey, TenantID: uuid.MustParse(raw), Subject: "test"}
				c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
			}
			c.Next()
		}
	}
	known := func(string) bool { return true }
	payments.NewHandler(f.svc).Routes(httpx.NewRouter(engine.Group("/v1"), table, authorize, known))
	return server{fixture: f, engine: engine, table: table}
}

// do sends a request as tenantID (none when uuid.Nil) with optional header
// pairs.
func (s server) do(t *testing.T, method, path string, tenantID uuid.UUID, body string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tenantID != uuid.Nil {
		req.Header.Set(testTenantHeader, tenantID.String())
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	s.engine.ServeHTTP(w, req)
	return w
}

type paymentBody struct {
	ID            uuid.UUID `json:"id"`
	OrderID       uuid.UUID `json:"order_id"`
	Status        string    `json:"status"`
	Amount        int64     `json:"amount"`
	Currency      string    `json:"currency"`
	PaymentMethod string    `json:"payment_method"`
	FailureReason *string   `json:"failure_reason"`
	Refunded      int64     `json:"refunded"`
	CreatedAt     string    `json:"created_at"`
}

type refundBody struct {
	ID            uuid.UUID `json:"id"`
	PaymentID     uuid.UUID `json:"payment_id"`
	Amount        int64     `json:"amount"`
	Currency      string    `json:"currency"`
	Status        string    `json:"status"`
	Reason        string    `json:"reason"`
	FailureReason string    `json:"failure_reason"`
	CreatedAt     string    `json:"created_at"`
}

type problemBody struct {
	Status int    `json:"status"`
	Code   string `json:"code"`
	Errors []struct {
		Field string `json:"field"`
	} `json:"errors"`
}

func decode[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", w.Body.String(), err)
	}
	return v
}

// wantStatus fails unless w has status.
func wantStatus(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("got status %d (%s), want %d", w.Code, w.Body.String(), status)
	}
}

// wantProblem fails unless w is a problem+json with status, code and, when
// given, exactly those fields named.
func wantProblem(t *testing.T, w *httptest.ResponseRecorder, status int, code string, fields ...string) {
	t.Helper()
	wantStatus(t, w, status)
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("got Content-Type %q, want application/problem+json", ct)
	}
	p := decode[problemBody](t, w)
	if p.Code != code || p.Status != status {
		t.Errorf("got code %q status %d, want %q %d", p.Code, p.Status, code, status)
	}
	var got []string
	for _, e := range p.Errors {
		got = append(got, e.Field)
	}
	slices.Sort(got)
	slices.Sort(fields)
	if len(fields) > 0 && !slices.Equal(got, fields) {
		t.Errorf("got fields %v, want %v", got, fields)
	}
	if strings.Contains(w.Body.String(), "SQLSTATE") {
		t.Errorf("got a body that leaks SQL: %s", w.Body.String())
	}
}

func payBody(orderID uuid.UUID, amount int64, method string) string {
	return fmt.Sprintf(`{"order_id":%q,"amount":%d,"currency":"EUR","payment_method":%q}`, orderID, amount, method)
}

// create pays a new order of total with method over HTTP and wants 201.
func (s server) create(t *testing.T, tenantID uuid.UUID, total int64, method string) paymentBody {
	t.Helper()
	w := s.do(t, http.MethodPost, "/v1/payments", tenantID, payBody(s.order(t, tenantID, total), total, method))
	wantStatus(t, w, http.StatusCreated)
	return decode[paymentBody](t, w)
}

func TestRoutesDeclarePermissions(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	got := s.table.Routes()
	want := []httpx.Route{
		{Method: "GET", Path: "/v1/payments", Permission: "payments:read"},
		{Method: "POST", Path: "/v1/payments", Permission: "payments:write"},
		{Method: "GET", Path: "/v1/payments/:id", Permission: "payments:read"},
		{Method: "POST", Path: "/v1/payments/:id/refunds", Permission: "payments:refund"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got routes %v, want %v", got, want)
	}
}

func TestHTTPCreate(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID := s.tenant(t)

	outcomes := []struct {
		method     string
		wantStatus string
		wantReason *string
	}{
		{"card", "succeeded", nil},
		{"card_declined", "failed", ptr("declined")},
		{"card_error", "succeeded", nil},
	}
	for _, tt := range outcomes {
		t.Run(tt.method, func(t *testing.T) {
			orderID := s.order(t, tenantID, 2599)
			w := s.do(t, http.MethodPost, "/v1/payments", tenantID, payBody(orderID, 2599, tt.method))
			wantStatus(t, w, http.StatusCreated)
			p := decode[paymentBody](t, w)
			want := paymentBody{ID: p.ID, OrderID: orderID, Status: tt.wantStatus, Amount: 2599, Currency: "EUR",
				PaymentMethod: tt.method, FailureReason: tt.wantReason, Refunded: 0, CreatedAt: p.CreatedAt}
			if !samePayment(p, want) {
				t.Errorf("got %+v, want %+v", p, want)
			}
			if !strings.HasSuffix(p.CreatedAt, "Z") {
				t.Errorf("got created_at %q, want RFC 3339 UTC", p.CreatedAt)
			}
			if got, want := w.Header().Get("Location"), "/v1/payments/"+p.ID.String(); got != want {
				t.Errorf("got Location %q, want %q", got, want)
			}
			if tt.wantReason == nil && strings.Contains(w.Body.String(), "failure_reason") {
				t.Errorf("got %s, want no failure_reason on a success", w.Body.String())
			}
		})
	}

	other := s.order(t, tenantID, 1000)
	problems := []struct {
		name   string
		body   string
		status int
		code   string
		fields []string
	}{
		{"empty body", ``, 422, "validation_failed", []string{"body"}},
		{"empty object", `{}`, 422, "validation_failed", []string{"amount", "currency", "order_id", "payment_method"}},
		{"order_id not a uuid", `{"order_id":"x","amount":1000,"currency":"EUR","payment_method":"card"}`, 422, "validation_failed", []string{"order_id"}},
		{"amount as string", `{"order_id":"` + other.String() + `","amount":"1000","currency":"EUR","payment_method":"card"}`, 422, "validation_failed", []string{"amount"}},
		{"fractional amount", `{"order_id":"` + other.String() + `","amount":10.5,"currency":"EUR","payment_method":"card"}`, 422, "validation_failed", []string{"amount"}},
		{"zero amount", payBody(other, 0, "card"), 422, "validation_failed", []string{"amount"}},
		{"unknown method", payBody(other, 1000, "cheque"), 422, "validation_failed", []string{"payment_method"}},
		{"unknown field", `{"order_id":"` + other.String() + `","amount":1000,"currency":"EUR","payment_method":"card","tip":5}`, 422, "validation_failed", []string{"tip"}},
		{"amount mismatch", payBody(other, 999, "card"), 422, "amount_mismatch", []string{"amount"}},
		{"currency mismatch", `{"order_id":"` + other.String() + `","amount":1000,"currency":"USD","payment_method":"card"}`, 422, "amount_mismatch", []string{"currency"}},
		{"unknown order", payBody(uuid.Must(uuid.NewV7()), 1000, "card"), 404, "not_found", nil},
	}
	for _, tt := range problems {
		t.Run(tt.name, func(t *testing.T) {
			w := s.do(t, http.MethodPost, "/v1/payments", tenantID, tt.body)
			wantProblem(t, w, tt.status, tt.code, tt.fields...)
		})
	}

	t.Run("order not pending", func(t *testing.T) {
		orderID := uuid.Must(uuid.NewV7())
		s.orders.set(tenantID, orderID, payments.Target{Status: "cancelled", Total: 100, Currency: "EUR"})
		w := s.do(t, http.MethodPost, "/v1/payments", tenantID, payBody(orderID, 100, "card"))
		wantProblem(t, w, http.StatusConflict, "order_not_payable")
	})
	t.Run("order paid already", func(t *testing.T) {
		p := s.create(t, tenantID, 100, "card")
		w := s.do(t, http.MethodPost, "/v1/payments", tenantID, payBody(p.OrderID, 100, "card"))
		wantProblem(t, w, http.StatusConflict, "order_not_payable")
	})
	t.Run("no principal", func(t *testing.T) {
		w := s.do(t, http.MethodPost, "/v1/payments", uuid.Nil, payBody(other, 1000, "card"))
		wantProblem(t, w, http.StatusUnauthorized, "unauthenticated")
	})
	if calls := s.gateway.calls.Load(); calls != 1+1+3+1 {
		t.Errorf("got %d gateway calls, want 6 (none for refused requests)", calls)
	}
}

func TestHTTPGatewayUnavailable(t *testing.T) {
	t.Parallel()
	opts := fastRetries
	opts.TripAfter = 2
	s := newServerOn(t, newFixtureWith(t, 4, payments.SimulatedOptions{FailTimes: -1}, opts))
	tenantID := s.tenant(t)
	orderID := s.order(t, tenantID, 1500)

	w := s.do(t, http.MethodPost, "/v1/payments", tenantID, payBody(orderID, 1500, "card_error"))
	wantProblem(t, w, http.StatusServiceUnavailable, "payment_gateway_unavailable")

	w = s.do(t, http.MethodGet, "/v1/payments?order_id="+orderID.String(), tenantID, "")
	wantStatus(t, w, http.StatusOK)
	list := decode[struct{ Data []paymentBody }](t, w)
	if len(list.Data) != 1 || list.Data[0].Status != "failed" || !equalPtr(list.Data[0].FailureReason, ptr("gateway_unavailable")) {
		t.Errorf("got %+v, want one failed payment with reason gateway_unavailable", list.Data)
	}
	w = s.do(t, http.MethodPost, "/v1/payments", tenantID, payBody(s.order(t, tenantID, 10), 10, "card"))
	wantProblem(t, w, http.StatusServiceUnavailable, "payment_gateway_unavailable")
}

func TestHTTPGetAndList(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := s.tenant(t), s.tenant(t)
	p := s.create(t, tenantID, 1200, "card")
	path := "/v1/payments/" + p.ID.String()

	w := s.do(t, http.MethodGet, path, tenantID, "")
	wantStatus(t, w, http.StatusOK)
	if got := decode[paymentBody](t, w); !samePayment(got, p) {
		t.Errorf("got %+v, want %+v", got, p)
	}
	tag := w.Header().Get("ETag")
	if tag != `"2"` {
		t.Errorf("got ETag %q, want %q", tag, `"2"`)
	}
	conditional := []struct {
		ifNoneMatch string
		want        int
	}{
		{tag, http.StatusNotModified},
		{"W/" + tag, http.StatusNotModified},
		{`"1", ` + tag, http.StatusNotModified},
		{"*", http.StatusNotModified},
		{`"1"`, http.StatusOK},
	}
	for _, tt := range conditional {
		t.Run("If-None-Match "+tt.ifNoneMatch, func(t *testing.T) {
			w := s.do(t, http.MethodGet, path, tenantID, "", "If-None-Match", tt.ifNoneMatch)
			wantStatus(t, w, tt.want)
		})
	}
	t.Run("a refund changes the ETag", func(t *testing.T) {
		wantStatus(t, s.do(t, http.MethodPost, path+"/refunds", tenantID, `{"amount":200}`), http.StatusCreated)
		w := s.do(t, http.MethodGet, path, tenantID, "", "If-None-Match", tag)
		wantStatus(t, w, http.StatusOK)
		if got := decode[paymentBody](t, w); got.Refunded != 200 || w.Header().Get("ETag") == tag {
			t.Errorf("got refunded %d ETag %q, want 200 and a new tag", got.Refunded, w.Header().Get("ETag"))
		}
	})
	t.Run("another tenant's payment", func(t *testing.T) {
		wantProblem(t, s.do(t, http.MethodGet, path, other, ""), http.StatusNotFound, "not_found")
	})
	t.Run("malformed id", func(t *testing.T) {
		wantProblem(t, s.do(t, http.MethodGet, "/v1/payments/nope", tenantID, ""), http.StatusUnprocessableEntity, "validation_failed", "id")
	})

	type listBody struct {
		Data       []paymentBody `json:"data"`
		NextCursor *string       `json:"next_cursor"`
	}
	second := s.create(t, tenantID, 300, "card_declined")
	s.create(t, other, 300, "card")
	t.Run("list pages", func(t *testing.T) {
		w := s.do(t, http.MethodGet, "/v1/payments?limit=1", tenantID, "")
		wantStatus(t, w, http.StatusOK)
		page := decode[listBody](t, w)
		if len(page.Data) != 1 || page.Data[0].ID != p.ID || page.NextCursor == nil {
			t.Fatalf("got %+v, want the first payment and a cursor", page)
		}
		w = s.do(t, http.MethodGet, "/v1/payments?limit=1&cursor="+*page.NextCursor, tenantID, "")
		wantStatus(t, w, http.StatusOK)
		page = decode[listBody](t, w)
		if len(page.Data) != 1 || page.Data[0].ID != second.ID || page.NextCursor != nil {
			t.Errorf("got %+v, want the second payment and no cursor", page)
		}
	})
	t.Run("list by order", func(t *testing.T) {
		w := s.do(t, http.MethodGet, "/v1/payments?order_id="+second.OrderID.String(), tenantID, "")
		wantStatus(t, w, http.StatusOK)
		page := decode[listBody](t, w)
		if len(page.Data) != 1 || page.Data[0].ID != second.ID {
			t.Errorf("got %+v, want only the second payment", page.Data)
		}
	})
	t.Run("another tenant's order lists nothing", func(t *testing.T) {
		w := s.do(t, http.MethodGet, "/v1/payments?order_id="+p.OrderID.String(), other, "")
		wantStatus(t, w, http.StatusOK)
		if body := strings.TrimSpace(w.Body.String()); body != `{"data":[],"next_cursor":null}` {
			t.Errorf("got %s, want an empty list", body)
		}
	})
	for _, q := range []struct{ query, field string }{{"order_id=x", "order_id"}, {"limit=0", "limit"}, {"cursor=not-a-cursor", "cursor"}} {
		t.Run("invalid "+q.query, func(t *testing.T) {
			w := s.do(t, http.MethodGet, "/v1/payments?"+q.query, tenantID, "")
			wantProblem(t, w, http.StatusUnprocessableEntity, "validation_failed", q.field)
		})
	}
}

func TestHTTPRefunds(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := s.tenant(t), s.tenant(t)
	p := s.create(t, tenantID, 1000, "card")
	declined := s.create(t, tenantID, 1000, "card_declined")
	path := "/v1/payments/" + p.ID.String() + "/refunds"

	w := s.do(t, http.MethodPost, path, tenantID, `{"amount":400}`)
	wantStatus(t, w, http.StatusCreated)
	r := decode[refundBody](t, w)
	want := refundBody{ID: r.ID, PaymentID: p.ID, Amount: 400, Currency: "EUR", Status: "succeeded", Reason: "requested", CreatedAt: r.CreatedAt}
	if r != want || r.ID == uuid.Nil || !strings.HasSuffix(r.CreatedAt, "Z") {
		t.Errorf("got %+v, want %+v", r, want)
	}

	tests := []struct {
		name     string
		tenantID uuid.UUID
		path     string
		body     string
		status   int
		code     string
		fields   []string
	}{
		{"more than is left", tenantID, path, `{"amount":601}`, 409, "conflict", nil},
		{"zero", tenantID, path, `{"amount":0}`, 422, "validation_failed", []string{"amount"}},
		{"negative", tenantID, path, `{"amount":-5}`, 422, "validation_failed", []string{"amount"}},
		{"missing amount", tenantID, path, `{}`, 422, "validation_failed", []string{"amount"}},
		{"unknown field", tenantID, path, `{"amount":1,"reason":"x"}`, 422, "validation_failed", []string{"reason"}},
		{"a declined payment", tenantID, "/v1/payments/" + declined.ID.String() + "/refunds", `{"amount":1}`, 409, "conflict", nil},
		{"another tenant's payment", other, path, `{"amount":1}`, 404, "not_found", nil},
		{"an unknown payment", tenantID, "/v1/payments/" + uuid.NewString() + "/refunds", `{"amount":1}`, 404, "not_found", nil},
		{"no principal", uuid.Nil, path, `{"amount":1}`, 401, "unauthenticated", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantProblem(t, s.do(t, http.MethodPost, tt.path, tt.tenantID, tt.body), tt.status, tt.code, tt.fields...)
		})
	}

	w = s.do(t, http.MethodPost, path, tenantID, `{"amount":600}`)
	wantStatus(t, w, http.StatusCreated)
	w = s.do(t, http.MethodGet, "/v1/payments/"+p.ID.String(), tenantID, "")
	wantStatus(t, w, http.StatusOK)
	if got := decode[paymentBody](t, w); got.Refunded != 1000 || got.Status != "succeeded" {
		t.Errorf("got refunded %d status %s, want 1000 succeeded", got.Refunded, got.Status)
	}
}

// TestHTTPRefundOutcomes: the refund route answers with what the gateway
// did: 201 succeeded, 201 failed with its reason, 202 pending when it could
// not be reached.
func TestHTTPRefundOutcomes(t *testing.T) {
	t.Parallel()
	opts := fastRetries
	opts.MaxElapsed = 30 * time.Millisecond
	opts.TripAfter = 1000
	s := newServerOn(t, newFixtureWith(t, 4, payments.SimulatedOptions{}, opts))
	tenantID := s.tenant(t)
	p := s.create(t, tenantID, 1000, "card")
	path := "/v1/payments/" + p.ID.String() + "/refunds"
	tests := []struct {
		name       string
		set        func(on bool)
		wantStatus int
		want       refundBody
	}{
		{"refused", s.gateway.refuseRefunds.Store, http.StatusCreated, refundBody{Status: "failed", FailureReason: refusedByTest}},
		{"unreachable", s.gateway.refundsDown.Store, http.StatusAccepted, refundBody{Status: "pending"}},
		{"taken", func(bool) {}, http.StatusCreated, refundBody{Status: "succeeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.set(true)
			defer tt.set(false)
			w := s.do(t, http.MethodPost, path, tenantID, `{"amount":100}`)
			wantStatus(t, w, tt.wantStatus)
			got := decode[refundBody](t, w)
			want := tt.want
			want.ID, want.PaymentID, want.Amount, want.Currency, want.Reason, want.CreatedAt = got.ID, p.ID, 100, "EUR", "requested", got.CreatedAt
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	// The pending refund holds its amount; the failed one does not.
	w := s.do(t, http.MethodGet, "/v1/payments/"+p.ID.String(), tenantID, "")
	wantStatus(t, w, http.StatusOK)
	if got := decode[paymentBody](t, w); got.Refunded != 200 {
		t.Errorf("got refunded %d, want 200 (one pending, one succeeded)", got.Refunded)
	}
}

// samePayment compares payment bodies, their failure reasons by value.
func samePayment(a, b paymentBody) bool {
	if !equalPtr(a.FailureReason, b.FailureReason) {
		return false
	}
	a.FailureReason, b.FailureReason = nil, nil
	return a == b
}

func ptr[T any](v T) *T { return &v }

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
