package payments_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/payments"
)

// server is the payment routes behind a stand-in authorizer: a request's
// bearer credential is the tenant id it runs as.
type server struct {
	fixture
	*apptest.Client
	table *httpx.Table
}

func newServer(t *testing.T) server {
	t.Helper()
	return newServerOn(t, newFixture(t, 4))
}

func newServerOn(t *testing.T, f fixture) server {
	t.Helper()
	c, table := apptest.ModuleClient(t, payments.NewHandler(f.svc).Routes)
	return server{fixture: f, Client: c, table: table}
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

func payBody(orderID uuid.UUID, amount int64, method string) string {
	return fmt.Sprintf(`{"order_id":%q,"amount":%d,"currency":"EUR","payment_method":%q}`, orderID, amount, method)
}

// create pays a new order of total with method over HTTP and wants 201.
func (s server) create(t *testing.T, tenantID uuid.UUID, total int64, method string) paymentBody {
	t.Helper()
	w := s.Send(http.MethodPost, "/v1/payments", tenantID, payBody(s.order(t, tenantID, total), total, method))
	w.WantStatus(t, http.StatusCreated)
	return apptest.Decode[paymentBody](t, w)
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
	tenantID := testenv.NewTenant(t).ID

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
			w := s.Send(http.MethodPost, "/v1/payments", tenantID, payBody(orderID, 2599, tt.method))
			w.WantStatus(t, http.StatusCreated)
			p := apptest.Decode[paymentBody](t, w)
			want := paymentBody{ID: p.ID, OrderID: orderID, Status: tt.wantStatus, Amount: 2599, Currency: "EUR",
				PaymentMethod: tt.method, FailureReason: tt.wantReason, Refunded: 0, CreatedAt: p.CreatedAt}
			if !samePayment(p, want) {
				t.Errorf("got %+v, want %+v", p, want)
			}
			if !strings.HasSuffix(p.CreatedAt, "Z") {
				t.Errorf("got created_at %q, want RFC 3339 UTC", p.CreatedAt)
			}
			if got, want := w.Header.Get("Location"), "/v1/payments/"+p.ID.String(); got != want {
				t.Errorf("got Location %q, want %q", got, want)
			}
			if tt.wantReason == nil && strings.Contains(string(w.Body), "failure_reason") {
				t.Errorf("got %s, want no failure_reason on a success", string(w.Body))
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
			w := s.Send(http.MethodPost, "/v1/payments", tenantID, tt.body)
			w.WantProblem(t, tt.status, tt.code, tt.fields...)
		})
	}

	t.Run("order not pending", func(t *testing.T) {
		orderID := uuid.Must(uuid.NewV7())
		s.orders.set(tenantID, orderID, payments.Target{Status: "cancelled", Total: 100, Currency: "EUR"})
		w := s.Send(http.MethodPost, "/v1/payments", tenantID, payBody(orderID, 100, "card"))
		w.WantProblem(t, http.StatusConflict, "order_not_payable")
	})
	t.Run("order paid already", func(t *testing.T) {
		p := s.create(t, tenantID, 100, "card")
		w := s.Send(http.MethodPost, "/v1/payments", tenantID, payBody(p.OrderID, 100, "card"))
		w.WantProblem(t, http.StatusConflict, "order_not_payable")
	})
	t.Run("no principal", func(t *testing.T) {
		w := s.Send(http.MethodPost, "/v1/payments", uuid.Nil, payBody(other, 1000, "card"))
		w.WantProblem(t, http.StatusUnauthorized, "unauthenticated")
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
	tenantID := testenv.NewTenant(t).ID
	orderID := s.order(t, tenantID, 1500)

	w := s.Send(http.MethodPost, "/v1/payments", tenantID, payBody(orderID, 1500, "card_error"))
	w.WantProblem(t, http.StatusServiceUnavailable, "payment_gateway_unavailable")

	w = s.Send(http.MethodGet, "/v1/payments?order_id="+orderID.String(), tenantID, "")
	w.WantStatus(t, http.StatusOK)
	list := apptest.Decode[struct{ Data []paymentBody }](t, w)
	if len(list.Data) != 1 || list.Data[0].Status != "failed" || !equalPtr(list.Data[0].FailureReason, ptr("gateway_unavailable")) {
		t.Errorf("got %+v, want one failed payment with reason gateway_unavailable", list.Data)
	}
	w = s.Send(http.MethodPost, "/v1/payments", tenantID, payBody(s.order(t, tenantID, 10), 10, "card"))
	w.WantProblem(t, http.StatusServiceUnavailable, "payment_gateway_unavailable")
}

func TestHTTPGetAndList(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	p := s.create(t, tenantID, 1200, "card")
	path := "/v1/payments/" + p.ID.String()

	w := s.Send(http.MethodGet, path, tenantID, "")
	w.WantStatus(t, http.StatusOK)
	if got := apptest.Decode[paymentBody](t, w); !samePayment(got, p) {
		t.Errorf("got %+v, want %+v", got, p)
	}
	tag := w.Header.Get("ETag")
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
			w := s.Send(http.MethodGet, path, tenantID, "", "If-None-Match", tt.ifNoneMatch)
			w.WantStatus(t, tt.want)
		})
	}
	t.Run("a refund changes the ETag", func(t *testing.T) {
		s.Send(http.MethodPost, path+"/refunds", tenantID, `{"amount":200}`).WantStatus(t, http.StatusCreated)
		w := s.Send(http.MethodGet, path, tenantID, "", "If-None-Match", tag)
		w.WantStatus(t, http.StatusOK)
		if got := apptest.Decode[paymentBody](t, w); got.Refunded != 200 || w.Header.Get("ETag") == tag {
			t.Errorf("got refunded %d ETag %q, want 200 and a new tag", got.Refunded, w.Header.Get("ETag"))
		}
	})
	t.Run("another tenant's payment", func(t *testing.T) {
		s.Send(http.MethodGet, path, other, "").WantProblem(t, http.StatusNotFound, "not_found")
	})
	t.Run("malformed id", func(t *testing.T) {
		s.Send(http.MethodGet, "/v1/payments/nope", tenantID, "").WantProblem(t, http.StatusUnprocessableEntity, "validation_failed", "id")
	})

	type listBody struct {
		Data       []paymentBody `json:"data"`
		NextCursor *string       `json:"next_cursor"`
	}
	second := s.create(t, tenantID, 300, "card_declined")
	s.create(t, other, 300, "card")
	t.Run("list pages", func(t *testing.T) {
		w := s.Send(http.MethodGet, "/v1/payments?limit=1", tenantID, "")
		w.WantStatus(t, http.StatusOK)
		page := apptest.Decode[listBody](t, w)
		if len(page.Data) != 1 || page.Data[0].ID != p.ID || page.NextCursor == nil {
			t.Fatalf("got %+v, want the first payment and a cursor", page)
		}
		w = s.Send(http.MethodGet, "/v1/payments?limit=1&cursor="+*page.NextCursor, tenantID, "")
		w.WantStatus(t, http.StatusOK)
		page = apptest.Decode[listBody](t, w)
		if len(page.Data) != 1 || page.Data[0].ID != second.ID || page.NextCursor != nil {
			t.Errorf("got %+v, want the second payment and no cursor", page)
		}
	})
	t.Run("list by order", func(t *testing.T) {
		w := s.Send(http.MethodGet, "/v1/payments?order_id="+second.OrderID.String(), tenantID, "")
		w.WantStatus(t, http.StatusOK)
		page := apptest.Decode[listBody](t, w)
		if len(page.Data) != 1 || page.Data[0].ID != second.ID {
			t.Errorf("got %+v, want only the second payment", page.Data)
		}
	})
	t.Run("another tenant's order lists nothing", func(t *testing.T) {
		w := s.Send(http.MethodGet, "/v1/payments?order_id="+p.OrderID.String(), other, "")
		w.WantStatus(t, http.StatusOK)
		if body := strings.TrimSpace(string(w.Body)); body != `{"data":[],"next_cursor":null}` {
			t.Errorf("got %s, want an empty list", body)
		}
	})
	for _, q := range []struct{ query, field string }{{"order_id=x", "order_id"}, {"limit=0", "limit"}, {"cursor=not-a-cursor", "cursor"}} {
		t.Run("invalid "+q.query, func(t *testing.T) {
			w := s.Send(http.MethodGet, "/v1/payments?"+q.query, tenantID, "")
			w.WantProblem(t, http.StatusUnprocessableEntity, "validation_failed", q.field)
		})
	}
}

func TestHTTPRefunds(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	p := s.create(t, tenantID, 1000, "card")
	declined := s.create(t, tenantID, 1000, "card_declined")
	path := "/v1/payments/" + p.ID.String() + "/refunds"

	w := s.Send(http.MethodPost, path, tenantID, `{"amount":400}`)
	w.WantStatus(t, http.StatusCreated)
	r := apptest.Decode[refundBody](t, w)
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
			s.Send(http.MethodPost, tt.path, tt.tenantID, tt.body).WantProblem(t, tt.status, tt.code, tt.fields...)
		})
	}

	w = s.Send(http.MethodPost, path, tenantID, `{"amount":600}`)
	w.WantStatus(t, http.StatusCreated)
	w = s.Send(http.MethodGet, "/v1/payments/"+p.ID.String(), tenantID, "")
	w.WantStatus(t, http.StatusOK)
	if got := apptest.Decode[paymentBody](t, w); got.Refunded != 1000 || got.Status != "succeeded" {
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
	tenantID := testenv.NewTenant(t).ID
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
			w := s.Send(http.MethodPost, path, tenantID, `{"amount":100}`)
			w.WantStatus(t, tt.wantStatus)
			got := apptest.Decode[refundBody](t, w)
			want := tt.want
			want.ID, want.PaymentID, want.Amount, want.Currency, want.Reason, want.CreatedAt = got.ID, p.ID, 100, "EUR", "requested", got.CreatedAt
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	// The pending refund holds its amount; the failed one does not.
	w := s.Send(http.MethodGet, "/v1/payments/"+p.ID.String(), tenantID, "")
	w.WantStatus(t, http.StatusOK)
	if got := apptest.Decode[paymentBody](t, w); got.Refunded != 200 {
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
