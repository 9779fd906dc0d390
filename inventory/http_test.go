package inventory_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/inventory"
)

// testTenantHeader names the tenant the test authorizer signs requests in
// as; without it a request carries no principal.
const testTenantHeader = "X-Test-Tenant"

// server is the product routes on a gin engine with a stand-in authorizer.
type server struct {
	fixture
	engine *gin.Engine
	table  *httpx.Table
}

func newServer(t *testing.T) server {
	t.Helper()
	gin.SetMode(gin.TestMode)
	f := newFixture(t, 4)
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
	inventory.NewHandler(f.svc).Routes(httpx.NewRouter(engine.Group("/v1"), table, authorize, known))
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

type productBody struct {
	ID        uuid.UUID `json:"id"`
	SKU       string    `json:"sku"`
	Name      string    `json:"name"`
	Price     int64     `json:"price"`
	Currency  string    `json:"currency"`
	Stock     int64     `json:"stock"`
	Reserved  int64     `json:"reserved"`
	Available int64     `json:"available"`
	Version   int       `json:"version"`
	CreatedAt string    `json:"created_at"`
	UpdatedAt string    `json:"updated_at"`
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

func (s server) create(t *testing.T, tenantID uuid.UUID, sku string, stock int) productBody {
	t.Helper()
	w := s.do(t, http.MethodPost, "/v1/products", tenantID,
		fmt.Sprintf(`{"sku":%q,"name":"Item %s","price":250,"currency":"EUR","stock":%d}`, sku, sku, stock))
	wantStatus(t, w, http.StatusCreated)
	return decode[productBody](t, w)
}

func TestRoutesDeclarePermissions(t *testing.T) {
	s := newServer(t)
	got := s.table.Routes()
	want := []httpx.Route{
		{Method: "GET", Path: "/v1/products", Permission: "products:read"},
		{Method: "POST", Path: "/v1/products", Permission: "products:write"},
		{Method: "DELETE", Path: "/v1/products/:id", Permission: "products:write"},
		{Method: "GET", Path: "/v1/products/:id", Permission: "products:read"},
		{Method: "PATCH", Path: "/v1/products/:id", Permission: "products:write"},
		{Method: "GET", Path: "/v1/products/:id/reservations", Permission: "products:read"},
		{Method: "POST", Path: "/v1/products/:id/stock", Permission: "inventory:adjust"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got routes %v, want %v", got, want)
	}
}

func TestHTTPCreate(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := s.tenant(t), s.tenant(t)

	w := s.do(t, http.MethodPost, "/v1/products", tenantID, `{"sku":"TEA-1","name":" Green tea ","price":450,"currency":"EUR","stock":12}`)
	wantStatus(t, w, http.StatusCreated)
	p := decode[productBody](t, w)
	want := productBody{ID: p.ID, SKU: "TEA-1", Name: "Green tea", Price: 450, Currency: "EUR", Stock: 12, Reserved: 0, Available: 12,
		Version: 1, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}
	if !strings.HasSuffix(p.CreatedAt, "Z") {
		t.Errorf("got created_at %q, want RFC 3339 UTC", p.CreatedAt)
	}
	if got, want := w.Header().Get("Location"), "/v1/products/"+p.ID.String(); got != want {
		t.Errorf("got Location %q, want %q", got, want)
	}
	if got := w.Header().Get("ETag"); got != `"1"` {
		t.Errorf("got ETag %q, want %q", got, `"1"`)
	}

	t.Run("stock defaults to zero", func(t *testing.T) {
		w := s.do(t, http.MethodPost, "/v1/products", tenantID, `{"sku":"NOSTOCK","name":"n","price":0,"currency":"USD"}`)
		wantStatus(t, w, http.StatusCreated)
		if p := decode[productBody](t, w); p.Stock != 0 || p.Available != 0 {
			t.Errorf("got stock %d available %d, want 0 0", p.Stock, p.Available)
		}
	})
	t.Run("duplicate sku", func(t *testing.T) {
		w := s.do(t, http.MethodPost, "/v1/products", tenantID, `{"sku":"TEA-1","name":"again","price":1,"currency":"EUR"}`)
		wantProblem(t, w, http.StatusConflict, "conflict")
	})
	t.Run("same sku in another tenant", func(t *testing.T) {
		w := s.do(t, http.MethodPost, "/v1/products", other, `{"sku":"TEA-1","name":"theirs","price":1,"currency":"EUR"}`)
		wantStatus(t, w, http.StatusCreated)
	})
	t.Run("no principal", func(t *testing.T) {
		w := s.do(t, http.MethodPost, "/v1/products", uuid.Nil, `{"sku":"X","name":"x","price":1,"currency":"EUR"}`)
		wantProblem(t, w, http.StatusUnauthorized, "unauthenticated")
	})

	invalid := []struct {
		name   string
		body   string
		fields []string
	}{
		{"empty body", ``, []string{"body"}},
		{"empty object", `{}`, []string{"sku", "name", "price", "currency"}},
		{"missing price and bad sku", `{"sku":"a b","name":"n","currency":"EUR"}`, []string{"price", "sku"}},
		{"null name", `{"sku":"a","name":null,"price":1,"currency":"EUR"}`, []string{"name"}},
		{"negative stock", `{"sku":"a","name":"n","price":1,"currency":"EUR","stock":-1}`, []string{"stock"}},
		{"negative price", `{"sku":"a","name":"n","price":-1,"currency":"EUR"}`, []string{"price"}},
		{"price beyond int64", `{"sku":"a","name":"n","price":99999999999999999999,"currency":"EUR"}`, []string{"price"}},
		{"fractional price", `{"sku":"a","name":"n","price":1.5,"currency":"EUR"}`, []string{"price"}},
		{"price as string", `{"sku":"a","name":"n","price":"1","currency":"EUR"}`, []string{"price"}},
		{"stock beyond int64", `{"sku":"a","name":"n","price":1,"currency":"EUR","stock":1e30}`, []string{"stock"}},
		{"lower-case currency", `{"sku":"a","name":"n","price":1,"currency":"eur"}`, []string{"currency"}},
		{"name with NUL", `{"sku":"a","name":"a\u0000b","price":1,"currency":"EUR"}`, []string{"name"}},
		{"long sku", `{"sku":"` + strings.Repeat("s", 65) + `","name":"n","price":1,"currency":"EUR"}`, []string{"sku"}},
		{"long name", `{"sku":"a","name":"` + strings.Repeat("n", 201) + `","price":1,"currency":"EUR"}`, []string{"name"}},
		{"unknown field", `{"sku":"a","name":"n","price":1,"currency":"EUR","reserved":3}`, []string{"reserved"}},
		{"array", `[]`, []string{"body"}},
		{"trailing data", `{"sku":"a","name":"n","price":1,"currency":"EUR"} {}`, []string{"body"}},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			w := s.do(t, http.MethodPost, "/v1/products", tenantID, tt.body)
			wantProblem(t, w, http.StatusUnprocessableEntity, "validation_failed", tt.fields...)
		})
	}
}

func TestHTTPList(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := s.tenant(t), s.tenant(t)
	var want []uuid.UUID
	for i := range 7 {
		want = append(want, s.create(t, tenantID, fmt.Sprintf("L-%d", i), i).ID)
	}
	s.create(t, other, "L-0", 1)
	slices.SortFunc(want, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })

	type listBody struct {
		Data       []productBody `json:"data"`
		NextCursor *string       `json:"next_cursor"`
	}
	var got []uuid.UUID
	var sizes []int
	path := "/v1/products?limit=3"
	for range 10 {
		w := s.do(t, http.MethodGet, path, tenantID, "")
		wantStatus(t, w, http.StatusOK)
		page := decode[listBody](t, w)
		sizes = append(sizes, len(page.Data))
		for _, p := range page.Data {
			got = append(got, p.ID)
		}
		if page.NextCursor == nil {
			break
		}
		path = "/v1/products?limit=3&cursor=" + *page.NextCursor
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Errorf("got page sizes %v, want [3 3 1]", sizes)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got ids %v, want %v", got, want)
	}

	t.Run("sku filter", func(t *testing.T) {
		w := s.do(t, http.MethodGet, "/v1/products?sku=L-3", tenantID, "")
		wantStatus(t, w, http.StatusOK)
		page := decode[listBody](t, w)
		if len(page.Data) != 1 || page.Data[0].SKU != "L-3" || page.NextCursor != nil {
			t.Errorf("got %+v, want only L-3 and no cursor", page)
		}
	})
	t.Run("empty list is an array", func(t *testing.T) {
		w := s.do(t, http.MethodGet, "/v1/products?sku=none", tenantID, "")
		wantStatus(t, w, http.StatusOK)
		if body := strings.TrimSpace(w.Body.String()); body != `{"data":[],"next_cursor":null}` {
			t.Errorf("got %s, want an empty data array and a null cursor", body)
		}
	})
	invalid := []struct{ query, field string }{
		{"limit=0", "limit"},
		{"limit=201", "limit"},
		{"cursor=not-a-cursor", "cursor"},
		{"sku=", "sku"},
		{"sku=%00", "sku"},
		{"sku=a%20b", "sku"},
	}
	for _, tt := range invalid {
		t.Run(tt.query, func(t *testing.T) {
			w := s.do(t, http.MethodGet, "/v1/products?"+tt.query, tenantID, "")
			wantProblem(t, w, http.StatusUnprocessableEntity, "validation_failed", tt.field)
		})
	}
}

func TestHTTPGet(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := s.tenant(t), s.tenant(t)
	p := s.create(t, tenantID, "GET-1", 4)
	path := "/v1/products/" + p.ID.String()

	w := s.do(t, http.MethodGet, path, tenantID, "")
	wantStatus(t, w, http.StatusOK)
	if got := decode[productBody](t, w); got != p {
		t.Errorf("got %+v, want %+v", got, p)
	}
	if got := w.Header().Get("ETag"); got != `"1"` {
		t.Errorf("got ETag %q, want %q", got, `"1"`)
	}

	conditional := []struct {
		ifNoneMatch string
		want        int
	}{
		{`"1"`, http.StatusNotModified},
		{`W/"1"`, http.StatusNotModified},
		{`"7", "1"`, http.StatusNotModified},
		{`*`, http.StatusNotModified},
		{`"2"`, http.StatusOK},
		{`garbage`, http.StatusOK},
	}
	for _, tt := range conditional {
		t.Run("If-None-Match "+tt.ifNoneMatch, func(t *testing.T) {
			w := s.do(t, http.MethodGet, path, tenantID, "", "If-None-Match", tt.ifNoneMatch)
			wantStatus(t, w, tt.want)
			if tt.want == http.StatusNotModified && w.Body.Len() != 0 {
				t.Errorf("got body %q, want none on 304", w.Body.String())
			}
			if got := w.Header().Get("ETag"); got != `"1"` {
				t.Errorf("got ETag %q, want %q", got, `"1"`)
			}
		})
	}

	t.Run("malformed id", func(t *testing.T) {
		wantProblem(t, s.do(t, http.MethodGet, "/v1/products/nope", tenantID, ""), http.StatusUnprocessableEntity, "validation_failed", "id")
	})
	t.Run("unknown id", func(t *testing.T) {
		wantProblem(t, s.do(t, http.MethodGet, "/v1/products/"+uuid.NewString(), tenantID, ""), http.StatusNotFound, "not_found")
	})
	t.Run("another tenant's product", func(t *testing.T) {
		wantProblem(t, s.do(t, http.MethodGet, path, other, ""), http.StatusNotFound, "not_found")
	})
	t.Run("no principal", func(t *testing.T) {
		wantProblem(t, s.do(t, http.MethodGet, path, uuid.Nil, ""), http.StatusUnauthorized, "unauthenticated")
	})
}

func TestHTTPPatch(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := s.tenant(t), s.tenant(t)
	p := s.create(t, tenantID, "PATCH-1", 4)
	s.create(t, tenantID, "PATCH-TAKEN", 1)
	path := "/v1/products/" + p.ID.String()

	// Each step runs on the product as the previous one left it.
	steps := []struct {
		name        string
		body        string
		ifMatch     string
		wantStatus  int
		wantCode    string
		wantField   string
		wantVersion int // after the step
	}{
		{"stale If-Match", `{"price":1}`, `"9"`, http.StatusPreconditionFailed, "precondition_failed", "", 1},
		{"weak If-Match", `{"price":1}`, `W/"1"`, http.StatusPreconditionFailed, "precondition_failed", "", 1},
		{"malformed If-Match", `{"price":1}`, `1`, http.StatusPreconditionFailed, "precondition_failed", "", 1},
		{"matching If-Match", `{"name":"Renamed","price":300}`, `"1"`, http.StatusOK, "", "", 2},
		{"old If-Match after a change", `{"price":1}`, `"1"`, http.StatusPreconditionFailed, "precondition_failed", "", 2},
		{"If-Match list naming the current version", `{"price":301}`, `"1", "2"`, http.StatusOK, "", "", 3},
		{"If-Match list of stale versions", `{"price":1}`, `"1", "2"`, http.StatusPreconditionFailed, "precondition_failed", "", 3},
		{"If-Match any", `{"currency":"USD"}`, `*`, http.StatusOK, "", "", 4},
		{"no If-Match", `{"sku":"PATCH-2"}`, ``, http.StatusOK, "", "", 5},
		{"empty object", `{}`, ``, http.StatusUnprocessableEntity, "validation_failed", "body", 5},
		{"empty body", ``, ``, http.StatusUnprocessableEntity, "validation_failed", "body", 5},
		{"stock is not patchable", `{"stock":100}`, ``, http.StatusUnprocessableEntity, "validation_failed", "stock", 5},
		{"bad currency", `{"currency":"usd"}`, ``, http.StatusUnprocessableEntity, "validation_failed", "currency", 5},
		{"taken sku", `{"sku":"PATCH-TAKEN"}`, ``, http.StatusConflict, "conflict", "", 5},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			var headers []string
			if tt.ifMatch != "" {
				headers = []string{"If-Match", tt.ifMatch}
			}
			w := s.do(t, http.MethodPatch, path, tenantID, tt.body, headers...)
			if tt.wantCode != "" {
				var fields []string
				if tt.wantField != "" {
					fields = []string{tt.wantField}
				}
				wantProblem(t, w, tt.wantStatus, tt.wantCode, fields...)
			} else {
				wantStatus(t, w, tt.wantStatus)
				if got, want := w.Header().Get("ETag"), fmt.Sprintf(`"%d"`, tt.wantVersion); got != want {
					t.Errorf("got ETag %q, want %q", got, want)
				}
			}
			cur := s.do(t, http.MethodGet, path, tenantID, "")
			wantStatus(t, cur, http.StatusOK)
			if got := decode[productBody](t, cur).Version; got != tt.wantVersion {
				t.Errorf("got version %d, want %d", got, tt.wantVersion)
			}
		})
	}

	final := decode[productBody](t, s.do(t, http.MethodGet, path, tenantID, ""))
	if final.Name != "Renamed" || final.Price != 301 || final.Currency != "USD" || final.SKU != "PATCH-2" || final.Stock != 4 {
		t.Errorf("got %+v, want Renamed, 301 USD, PATCH-2, stock 4", final)
	}

	t.Run("another tenant's product", func(t *testing.T) {
		wantProblem(t, s.do(t, http.MethodPatch, path, other, `{"name":"mine"}`), http.StatusNotFound, "not_found")
		wantProblem(t, s.do(t, http.MethodPatch, path, other, `{"name":"mine"}`, "If-Match", `"5"`), http.StatusNotFound, "not_found")
		wantProblem(t, s.do(t, http.MethodPatch, path, other, `{"name":"mine"}`, "If-Match", `"1", "5"`), http.StatusNotFound, "not_found")
	})
}

func TestHTTPDelete(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := s.tenant(t), s.tenant(t)
	p := s.create(t, tenantID, "DEL-1", 4)
	path := "/v1/products/" + p.ID.String()

	wantProblem(t, s.do(t, http.MethodDelete, path, other, ""), http.StatusNotFound, "not_found")
	w := s.do(t, http.MethodDelete, path, tenantID, "")
	wantStatus(t, w, http.StatusNoContent)
	if w.Body.Len() != 0 {
		t.Errorf("got body %q, want none", w.Body.String())
	}
	wantProblem(t, s.do(t, http.MethodDelete, path, tenantID, ""), http.StatusNotFound, "not_found")
	wantProblem(t, s.do(t, http.MethodGet, path, tenantID, ""), http.StatusNotFound, "not_found")

	reserved := s.create(t, tenantID, "DEL-2", 4)
	s.reserve(t, tenantID, reserved.ID, 2)
	wantProblem(t, s.do(t, http.MethodDelete, "/v1/products/"+reserved.ID.String(), tenantID, ""), http.StatusConflict, "conflict")
}

func TestHTTPAdjustStock(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := s.tenant(t), s.tenant(t)
	p := s.create(t, tenantID, "STOCK-1", 10)
	s.reserve(t, tenantID, p.ID, 4)
	path := "/v1/products/" + p.ID.String() + "/stock"

	// Each step runs on the stock the previous one left.
	steps := []struct {
		name       string
		body       string
		tenant     uuid.UUID
		wantStatus int
		wantCode   string
		wantField  string
		wantStock  int64 // after the step
	}{
		{"delivery", `{"delta":5,"reason":"delivery"}`, tenantID, http.StatusOK, "", "", 15},
		{"sale down to reserved", `{"delta":-11,"reason":"sale"}`, tenantID, http.StatusOK, "", "", 4},
		{"below reserved", `{"delta":-1,"reason":"sale"}`, tenantID, http.StatusConflict, "conflict", "", 4},
		{"zero delta", `{"delta":0,"reason":"x"}`, tenantID, http.StatusUnprocessableEntity, "validation_failed", "delta", 4},
		{"missing delta", `{"reason":"x"}`, tenantID, http.StatusUnprocessableEntity, "validation_failed", "delta", 4},
		{"missing reason", `{"delta":1}`, tenantID, http.StatusUnprocessableEntity, "validation_failed", "reason", 4},
		{"long reason", `{"delta":1,"reason":"` + strings.Repeat("r", 201) + `"}`, tenantID, http.StatusUnprocessableEntity, "validation_failed", "reason", 4},
		{"delta beyond int64", `{"delta":1e19,"reason":"x"}`, tenantID, http.StatusUnprocessableEntity, "validation_failed", "delta", 4},
		{"overflowing stock", `{"delta":9223372036854775807,"reason":"x"}`, tenantID, http.StatusUnprocessableEntity, "validation_failed", "delta", 4},
		{"unknown field", `{"delta":1,"reason":"x","force":true}`, tenantID, http.StatusUnprocessableEntity, "validation_failed", "force", 4},
		{"another tenant", `{"delta":-4,"reason":"x"}`, other, http.StatusNotFound, "not_found", "", 4},
		{"no principal", `{"delta":-4,"reason":"x"}`, uuid.Nil, http.StatusUnauthorized, "unauthenticated", "", 4},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			w := s.do(t, http.MethodPost, path, tt.tenant, tt.body)
			if tt.wantCode != "" {
				var fields []string
				if tt.wantField != "" {
					fields = []string{tt.wantField}
				}
				wantProblem(t, w, tt.wantStatus, tt.wantCode, fields...)
			} else {
				wantStatus(t, w, tt.wantStatus)
				got := decode[productBody](t, w)
				if got.Stock != tt.wantStock || got.Reserved != 4 || got.Available != tt.wantStock-4 {
					t.Errorf("got stock %d reserved %d available %d, want %d 4 %d", got.Stock, got.Reserved, got.Available, tt.wantStock, tt.wantStock-4)
				}
			}
			cur := decode[productBody](t, s.do(t, http.MethodGet, "/v1/products/"+p.ID.String(), tenantID, ""))
			if cur.Stock != tt.wantStock {
				t.Errorf("got stored stock %d, want %d", cur.Stock, tt.wantStock)
			}
		})
	}

	t.Run("unknown product", func(t *testing.T) {
		w := s.do(t, http.MethodPost, "/v1/products/"+uuid.NewString()+"/stock", tenantID, `{"delta":1,"reason":"x"}`)
		wantProblem(t, w, http.StatusNotFound, "not_found")
	})
}
