package inventory_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/inventory"
)

// server is the product routes behind a stand-in authorizer: a request's
// bearer credential is the tenant id it runs as.
type server struct {
	fixture
	*apptest.Client
	table *httpx.Table
}

func newServer(t *testing.T) server {
	t.Helper()
	f := newFixture(t, 4)
	c, table := apptest.ModuleClient(t, inventory.NewHandler(f.svc).Routes)
	return server{fixture: f, Client: c, table: table}
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

func (s server) create(t *testing.T, tenantID uuid.UUID, sku string, stock int) productBody {
	t.Helper()
	w := s.Send(http.MethodPost, "/v1/products", tenantID,
		fmt.Sprintf(`{"sku":%q,"name":"Item %s","price":250,"currency":"EUR","stock":%d}`, sku, sku, stock))
	w.WantStatus(t, http.StatusCreated)
	return apptest.Decode[productBody](t, w)
}

// wantStep checks w against a table step: the problem code (blaming field,
// when set) when code is set, else the status. It reports whether the step
// wanted success, whose answer the caller checks further.
func wantStep(t *testing.T, w apptest.Response, status int, code, field string) (success bool) {
	t.Helper()
	if code == "" {
		w.WantStatus(t, status)
		return true
	}
	var fields []string
	if field != "" {
		fields = []string{field}
	}
	w.WantProblem(t, status, code, fields...)
	return false
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
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID

	w := s.Send(http.MethodPost, "/v1/products", tenantID, `{"sku":"TEA-1","name":" Green tea ","price":450,"currency":"EUR","stock":12}`)
	w.WantStatus(t, http.StatusCreated)
	p := apptest.Decode[productBody](t, w)
	want := productBody{ID: p.ID, SKU: "TEA-1", Name: "Green tea", Price: 450, Currency: "EUR", Stock: 12, Reserved: 0, Available: 12,
		Version: 1, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}
	if !strings.HasSuffix(p.CreatedAt, "Z") {
		t.Errorf("got created_at %q, want RFC 3339 UTC", p.CreatedAt)
	}
	if got, want := w.Header.Get("Location"), "/v1/products/"+p.ID.String(); got != want {
		t.Errorf("got Location %q, want %q", got, want)
	}
	if got := w.Header.Get("ETag"); got != `"1"` {
		t.Errorf("got ETag %q, want %q", got, `"1"`)
	}

	t.Run("stock defaults to zero", func(t *testing.T) {
		w := s.Send(http.MethodPost, "/v1/products", tenantID, `{"sku":"NOSTOCK","name":"n","price":0,"currency":"USD"}`)
		w.WantStatus(t, http.StatusCreated)
		if p := apptest.Decode[productBody](t, w); p.Stock != 0 || p.Available != 0 {
			t.Errorf("got stock %d available %d, want 0 0", p.Stock, p.Available)
		}
	})
	t.Run("duplicate sku", func(t *testing.T) {
		w := s.Send(http.MethodPost, "/v1/products", tenantID, `{"sku":"TEA-1","name":"again","price":1,"currency":"EUR"}`)
		w.WantProblem(t, http.StatusConflict, "conflict")
	})
	t.Run("same sku in another tenant", func(t *testing.T) {
		w := s.Send(http.MethodPost, "/v1/products", other, `{"sku":"TEA-1","name":"theirs","price":1,"currency":"EUR"}`)
		w.WantStatus(t, http.StatusCreated)
	})
	t.Run("no principal", func(t *testing.T) {
		w := s.Send(http.MethodPost, "/v1/products", uuid.Nil, `{"sku":"X","name":"x","price":1,"currency":"EUR"}`)
		w.WantProblem(t, http.StatusUnauthorized, "unauthenticated")
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
			w := s.Send(http.MethodPost, "/v1/products", tenantID, tt.body)
			w.WantProblem(t, http.StatusUnprocessableEntity, "validation_failed", tt.fields...)
		})
	}
}

func TestHTTPList(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
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
		w := s.Send(http.MethodGet, path, tenantID, "")
		w.WantStatus(t, http.StatusOK)
		page := apptest.Decode[listBody](t, w)
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
		w := s.Send(http.MethodGet, "/v1/products?sku=L-3", tenantID, "")
		w.WantStatus(t, http.StatusOK)
		page := apptest.Decode[listBody](t, w)
		if len(page.Data) != 1 || page.Data[0].SKU != "L-3" || page.NextCursor != nil {
			t.Errorf("got %+v, want only L-3 and no cursor", page)
		}
	})
	t.Run("empty list is an array", func(t *testing.T) {
		w := s.Send(http.MethodGet, "/v1/products?sku=none", tenantID, "")
		w.WantStatus(t, http.StatusOK)
		if body := strings.TrimSpace(string(w.Body)); body != `{"data":[],"next_cursor":null}` {
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
			w := s.Send(http.MethodGet, "/v1/products?"+tt.query, tenantID, "")
			w.WantProblem(t, http.StatusUnprocessableEntity, "validation_failed", tt.field)
		})
	}
}

func TestHTTPGet(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	p := s.create(t, tenantID, "GET-1", 4)
	path := "/v1/products/" + p.ID.String()

	w := s.Send(http.MethodGet, path, tenantID, "")
	w.WantStatus(t, http.StatusOK)
	if got := apptest.Decode[productBody](t, w); got != p {
		t.Errorf("got %+v, want %+v", got, p)
	}
	if got := w.Header.Get("ETag"); got != `"1"` {
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
			w := s.Send(http.MethodGet, path, tenantID, "", "If-None-Match", tt.ifNoneMatch)
			w.WantStatus(t, tt.want)
			if tt.want == http.StatusNotModified && len(w.Body) != 0 {
				t.Errorf("got body %q, want none on 304", string(w.Body))
			}
			if got := w.Header.Get("ETag"); got != `"1"` {
				t.Errorf("got ETag %q, want %q", got, `"1"`)
			}
		})
	}

	t.Run("malformed id", func(t *testing.T) {
		s.Send(http.MethodGet, "/v1/products/nope", tenantID, "").WantProblem(t, http.StatusUnprocessableEntity, "validation_failed", "id")
	})
	t.Run("unknown id", func(t *testing.T) {
		s.Send(http.MethodGet, "/v1/products/"+uuid.NewString(), tenantID, "").WantProblem(t, http.StatusNotFound, "not_found")
	})
	t.Run("another tenant's product", func(t *testing.T) {
		s.Send(http.MethodGet, path, other, "").WantProblem(t, http.StatusNotFound, "not_found")
	})
	t.Run("no principal", func(t *testing.T) {
		s.Send(http.MethodGet, path, uuid.Nil, "").WantProblem(t, http.StatusUnauthorized, "unauthenticated")
	})
}

func TestHTTPPatch(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
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
			w := s.Send(http.MethodPatch, path, tenantID, tt.body, headers...)
			if wantStep(t, w, tt.wantStatus, tt.wantCode, tt.wantField) {
				if got, want := w.Header.Get("ETag"), fmt.Sprintf(`"%d"`, tt.wantVersion); got != want {
					t.Errorf("got ETag %q, want %q", got, want)
				}
			}
			cur := s.Send(http.MethodGet, path, tenantID, "")
			cur.WantStatus(t, http.StatusOK)
			if got := apptest.Decode[productBody](t, cur).Version; got != tt.wantVersion {
				t.Errorf("got version %d, want %d", got, tt.wantVersion)
			}
		})
	}

	final := apptest.Decode[productBody](t, s.Send(http.MethodGet, path, tenantID, ""))
	if final.Name != "Renamed" || final.Price != 301 || final.Currency != "USD" || final.SKU != "PATCH-2" || final.Stock != 4 {
		t.Errorf("got %+v, want Renamed, 301 USD, PATCH-2, stock 4", final)
	}

	t.Run("another tenant's product", func(t *testing.T) {
		s.Send(http.MethodPatch, path, other, `{"name":"mine"}`).WantProblem(t, http.StatusNotFound, "not_found")
		s.Send(http.MethodPatch, path, other, `{"name":"mine"}`, "If-Match", `"5"`).WantProblem(t, http.StatusNotFound, "not_found")
		s.Send(http.MethodPatch, path, other, `{"name":"mine"}`, "If-Match", `"1", "5"`).WantProblem(t, http.StatusNotFound, "not_found")
	})
}

func TestHTTPDelete(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	p := s.create(t, tenantID, "DEL-1", 4)
	path := "/v1/products/" + p.ID.String()

	s.Send(http.MethodDelete, path, other, "").WantProblem(t, http.StatusNotFound, "not_found")
	w := s.Send(http.MethodDelete, path, tenantID, "")
	w.WantStatus(t, http.StatusNoContent)
	if len(w.Body) != 0 {
		t.Errorf("got body %q, want none", string(w.Body))
	}
	s.Send(http.MethodDelete, path, tenantID, "").WantProblem(t, http.StatusNotFound, "not_found")
	s.Send(http.MethodGet, path, tenantID, "").WantProblem(t, http.StatusNotFound, "not_found")

	reserved := s.create(t, tenantID, "DEL-2", 4)
	s.reserve(t, tenantID, reserved.ID, 2)
	s.Send(http.MethodDelete, "/v1/products/"+reserved.ID.String(), tenantID, "").WantProblem(t, http.StatusConflict, "conflict")
}

func TestHTTPAdjustStock(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
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
			w := s.Send(http.MethodPost, path, tt.tenant, tt.body)
			if wantStep(t, w, tt.wantStatus, tt.wantCode, tt.wantField) {
				got := apptest.Decode[productBody](t, w)
				if got.Stock != tt.wantStock || got.Reserved != 4 || got.Available != tt.wantStock-4 {
					t.Errorf("got stock %d reserved %d available %d, want %d 4 %d", got.Stock, got.Reserved, got.Available, tt.wantStock, tt.wantStock-4)
				}
			}
			cur := apptest.Decode[productBody](t, s.Send(http.MethodGet, "/v1/products/"+p.ID.String(), tenantID, ""))
			if cur.Stock != tt.wantStock {
				t.Errorf("got stored stock %d, want %d", cur.Stock, tt.wantStock)
			}
		})
	}

	t.Run("unknown product", func(t *testing.T) {
		w := s.Send(http.MethodPost, "/v1/products/"+uuid.NewString()+"/stock", tenantID, `{"delta":1,"reason":"x"}`)
		w.WantProblem(t, http.StatusNotFound, "not_found")
	})
}
