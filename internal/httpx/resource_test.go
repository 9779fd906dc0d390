package httpx_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// The permissions of the widget routes.
const (
	widgetsRead  = "widgets:read"
	widgetsWrite = "widgets:write"
)

// widget is the resource of the Resource tests, as its store holds it.
type widget struct {
	ID, Tenant uuid.UUID
	Name       string
	Version    int64
}

// widgetJSON is a widget as the API shows it.
type widgetJSON struct {
	ID   uuid.UUID `json:"id"`
	Name string    `json:"name"`
}

// widgetName is the body that creates or renames a widget.
type widgetName struct {
	Name string `json:"name"`
}

var (
	owner, stranger = uuid.UUID{0: 0xa}, uuid.UUID{0: 0xb} // the widgets' tenant, and another
	errNoWidget     = fault.New(fault.NotFound, "no such widget")

	versioned = httpx.Resource[widget, widgetJSON]{
		Render:  func(w widget) widgetJSON { return widgetJSON{w.ID, w.Name} },
		ID:      func(w widgetJSON) uuid.UUID { return w.ID },
		Version: func(w widget) int64 { return w.Version },
	}
	unversioned = httpx.Resource[widget, widgetJSON]{Render: versioned.Render, ID: versioned.ID}
	// pinned acts for owner whoever asks, as an operator route would.
	pinned = httpx.Resource[widget, widgetJSON]{Render: versioned.Render, ID: versioned.ID,
		Tenant: func(*gin.Context) (uuid.UUID, error) { return owner, nil }}
	refusing = httpx.Resource[widget, widgetJSON]{Render: versioned.Render, ID: versioned.ID,
		Tenant: func(*gin.Context) (uuid.UUID, error) { return uuid.Nil, fault.New(fault.Forbidden, "not yours") }}
	// platform is an operator's: no tenant is refused, uuid.Nil acts (and
	// holds no widgets).
	platform = httpx.Resource[widget, widgetJSON]{Render: versioned.Render, ID: versioned.ID, Tenant: httpx.NoTenant}
)

// wid is the id of widget n.
func wid(n byte) uuid.UUID { return uuid.UUID{15: n} }

// widgets is the store behind the widget routes: owner's widgets 1 to 3 at
// version 1, in id order.
type widgets []widget

func newWidgets() *widgets {
	return &widgets{{wid(1), owner, "w1", 1}, {wid(2), owner, "w2", 1}, {wid(3), owner, "w3", 1}}
}

func (s *widgets) list(_ context.Context, tenantID, after uuid.UUID, limit int) ([]widget, error) {
	var out []widget
	for _, w := range *s {
		if w.Tenant == tenantID && bytes.Compare(w.ID[:], after[:]) > 0 && len(out) <= limit {
			out = append(out, w)
		}
	}
	return out, nil
}

// find returns tenantID's widget id, or errNoWidget.
func (s *widgets) find(tenantID, id uuid.UUID) (*widget, error) {
	i := slices.IndexFunc(*s, func(w widget) bool { return w.ID == id && w.Tenant == tenantID })
	if i < 0 {
		return nil, errNoWidget
	}
	return &(*s)[i], nil
}

func (s *widgets) get(_ context.Context, tenantID, id uuid.UUID) (widget, error) {
	w, err := s.find(tenantID, id)
	if err != nil {
		return widget{}, err
	}
	return *w, nil
}

func (s *widgets) create(_ context.Context, tenantID uuid.UUID, name string) (widget, error) {
	w := widget{wid(byte(len(*s) + 1)), tenantID, name, 1}
	*s = append(*s, w)
	return w, nil
}

func (s *widgets) rename(_ context.Context, tenantID, id uuid.UUID, name string) (widget, error) {
	w, err := s.find(tenantID, id)
	if err != nil {
		return widget{}, err
	}
	w.Name, w.Version = name, w.Version+1
	return *w, nil
}

func (s *widgets) remove(_ context.Context, tenantID, id uuid.UUID) error {
	if _, err := s.find(tenantID, id); err != nil {
		return err
	}
	*s = slices.DeleteFunc(*s, func(w widget) bool { return w.ID == id })
	return nil
}

// toName checks a create or rename body: a name is required.
func toName(req widgetName) (string, error) {
	if req.Name == "" {
		return "", fault.Invalid(fault.Field("name", "is required"))
	}
	return req.Name, nil
}

// mount serves the routes that register registers on /v1 of a new engine,
// as the app mounts a module: authentication stood in for by X-Test-Tenant
// (no principal without it), and an authorization that refuses the one
// permission X-Test-Deny names.
func mount(register func(r *httpx.Router)) (*gin.Engine, *httpx.Table) {
	gin.SetMode(gin.TestMode)
	e, table := gin.New(), &httpx.Table{}
	authn := func(c *gin.Context) {
		if id, err := uuid.Parse(c.GetHeader("X-Test-Tenant")); err == nil {
			p := identity.Principal{Kind: identity.KindAPIKey, TenantID: id}
			c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
		}
	}
	authorize := func(permission string) gin.HandlerFunc {
		return func(c *gin.Context) {
			if c.GetHeader("X-Test-Deny") == permission {
				httpx.Fail(c, fault.Forbidden, "missing permission "+permission)
			}
		}
	}
	known := func(p string) bool { return p == widgetsRead || p == widgetsWrite }
	register(httpx.NewRouter(e.Group("/v1", authn), table, authorize, known))
	return e, table
}

// serve sends "METHOD path" with body and the headers to e.
func serve(e *gin.Engine, request, body string, header map[string]string) *httptest.ResponseRecorder {
	method, path, _ := strings.Cut(request, " ")
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	return w
}

// route is a row of a route table.
func route(method, path, permission string) httpx.Route {
	return httpx.Route{Method: method, Path: path, Permission: permission}
}

// TestCollection: Collection registers a route for each handler it is
// given and none for a nil one; reading requires the read permission and
// changing the write permission, both in the route table and in the
// authorization that runs before the handler.
func TestCollection(t *testing.T) {
	ok := func(c *gin.Context) error { c.Status(http.StatusNoContent); return nil }
	five := []httpx.Route{
		route("GET", "/v1/widgets", widgetsRead), route("POST", "/v1/widgets", widgetsWrite),
		route("DELETE", "/v1/widgets/:id", widgetsWrite), route("GET", "/v1/widgets/:id", widgetsRead),
		route("PATCH", "/v1/widgets/:id", widgetsWrite),
	}
	tests := []struct {
		name string
		c    httpx.Collection
		want []httpx.Route
	}{
		{"all five", httpx.Collection{List: ok, Create: ok, Get: ok, Update: ok, Delete: ok}, five},
		{"reads only", httpx.Collection{List: ok, Get: ok}, []httpx.Route{five[0], five[3]}},
		{"create and delete", httpx.Collection{Create: ok, Delete: ok}, []httpx.Route{five[1], five[2]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, table := mount(func(r *httpx.Router) { r.Collection("/widgets", widgetsRead, widgetsWrite, tt.c) })
			if got := table.Routes(); !slices.Equal(got, tt.want) {
				t.Errorf("got routes %v, want %v", got, tt.want)
			}
			for _, rt := range five {
				for _, deny := range []string{widgetsRead, widgetsWrite} {
					want := http.StatusNoContent
					switch {
					case !slices.Contains(tt.want, rt):
						want = http.StatusNotFound
					case deny == rt.Permission:
						want = http.StatusForbidden
					}
					request := rt.Method + " " + strings.Replace(rt.Path, ":id", wid(1).String(), 1)
					if w := serve(e, request, "", map[string]string{"X-Test-Deny": deny}); w.Code != want {
						t.Errorf("%s denied %s: got %d, want %d", request, deny, w.Code, want)
					}
				}
			}
		})
	}
}

// answer is what a widget request should be answered: the status and
// headers, and the exact body of a success or the code (and blamed field)
// of a problem.
type answer struct {
	status         int
	location, etag string
	body           string
	code           fault.Code
	field          string
}

// cursor is the list cursor after widget n.
func cursor(n byte) string { id := wid(n); return base64.RawURLEncoding.EncodeToString(id[:]) }

// item is the JSON of widget n named name; page that of a list of items
// with the cursor after widget next (0: no next page).
func item(n byte, name string) string { return fmt.Sprintf(`{"id":%q,"name":%q}`, wid(n), name) }
func page(next byte, items ...string) string {
	nextCursor := "null"
	if next != 0 {
		nextCursor = `"` + cursor(next) + `"`
	}
	return `{"data":[` + strings.Join(items, ",") + `],"next_cursor":` + nextCursor + `}`
}

// TestResource: the list, get, create, update, action and delete handlers
// of a Resource answer with the acting tenant's resources, the statuses,
// Location and ETags of the API, and problem+json for a refused tenant, a
// bad id, page or body and a missing resource, checked in that order.
func TestResource(t *testing.T) {
	noTenant := map[string]string{"X-Test-Tenant": ""}
	tests := []struct {
		name    string
		res     httpx.Resource[widget, widgetJSON]
		request string
		body    string
		header  map[string]string
		want    answer
	}{
		{"list", versioned, "GET /v1/widgets", "", nil, answer{status: 200, body: page(0, item(1, "w1"), item(2, "w2"), item(3, "w3"))}},
		{"list: a page", versioned, "GET /v1/widgets?limit=2", "", nil, answer{status: 200, body: page(2, item(1, "w1"), item(2, "w2"))}},
		{"list: the next page", versioned, "GET /v1/widgets?limit=2&cursor=" + cursor(2), "", nil,
			answer{status: 200, body: page(0, item(3, "w3"))}},
		{"list: another tenant's", versioned, "GET /v1/widgets", "", map[string]string{"X-Test-Tenant": stranger.String()}, answer{status: 200, body: page(0)}},
		{"list: limit 0", versioned, "GET /v1/widgets?limit=0", "", nil, answer{status: 422, code: fault.Validation, field: "limit"}},
		{"list: limit 201", versioned, "GET /v1/widgets?limit=201", "", nil, answer{status: 422, code: fault.Validation, field: "limit"}},
		{"list: limit ten", versioned, "GET /v1/widgets?limit=ten", "", nil, answer{status: 422, code: fault.Validation, field: "limit"}},
		{"list: bad cursor", versioned, "GET /v1/widgets?cursor=x", "", nil, answer{status: 422, code: fault.Validation, field: "cursor"}},
		{"list: no tenant", versioned, "GET /v1/widgets?limit=0", "", noTenant, answer{status: 401, code: fault.Unauthenticated}},
		{"get", versioned, "GET /v1/widgets/" + wid(2).String(), "", nil, answer{status: 200, etag: `"1"`, body: item(2, "w2")}},
		{"get: not modified", versioned, "GET /v1/widgets/" + wid(2).String(), "", map[string]string{"If-None-Match": `"1"`},
			answer{status: 304, etag: `"1"`}},
		{"get: missing", versioned, "GET /v1/widgets/" + wid(9).String(), "", nil, answer{status: 404, code: fault.NotFound}},
		{"get: another tenant's", versioned, "GET /v1/widgets/" + wid(2).String(), "", map[string]string{"X-Test-Tenant": stranger.String()},
			answer{status: 404, code: fault.NotFound}},
		{"get: bad id", versioned, "GET /v1/widgets/w2", "", nil, answer{status: 422, code: fault.Validation, field: "id"}},
		{"get: no tenant", versioned, "GET /v1/widgets/w2", "", noTenant, answer{status: 401, code: fault.Unauthenticated}},
		{"get: no versions", unversioned, "GET /v1/widgets/" + wid(2).String(), "", map[string]string{"If-None-Match": "*"},
			answer{status: 200, body: item(2, "w2")}},
		{"create", versioned, "POST /v1/widgets", `{"name":"w4"}`, nil,
			answer{status: 201, location: "/v1/widgets/" + wid(4).String(), etag: `"1"`, body: item(4, "w4")}},
		{"create: no versions", unversioned, "POST /v1/widgets", `{"name":"w4"}`, nil,
			answer{status: 201, location: "/v1/widgets/" + wid(4).String(), body: item(4, "w4")}},
		{"create: invalid", versioned, "POST /v1/widgets", `{"name":""}`, nil, answer{status: 422, code: fault.Validation, field: "name"}},
		{"create: unknown field", versioned, "POST /v1/widgets", `{"colour":"red"}`, nil, answer{status: 422, code: fault.Validation, field: "colour"}},
		{"create: no tenant", versioned, "POST /v1/widgets", `{"name":""}`, noTenant, answer{status: 401, code: fault.Unauthenticated}},
		{"update", versioned, "PATCH /v1/widgets/" + wid(2).String(), `{"name":"w2b"}`, nil, answer{status: 200, etag: `"2"`, body: item(2, "w2b")}},
		{"update: missing", versioned, "PATCH /v1/widgets/" + wid(9).String(), `{"name":"w9"}`, nil, answer{status: 404, code: fault.NotFound}},
		{"update: invalid", versioned, "PATCH /v1/widgets/" + wid(2).String(), `{"name":""}`, nil, answer{status: 422, code: fault.Validation, field: "name"}},
		{"update: bad id", versioned, "PATCH /v1/widgets/w2", `{"name":""}`, nil, answer{status: 422, code: fault.Validation, field: "id"}},
		{"action", versioned, "POST /v1/widgets/" + wid(3).String() + "/archive", "", nil, answer{status: 202, etag: `"1"`, body: item(3, "w3")}},
		{"action: no versions", unversioned, "POST /v1/widgets/" + wid(3).String() + "/archive", "", nil, answer{status: 202, body: item(3, "w3")}},
		{"action: missing", versioned, "POST /v1/widgets/" + wid(9).String() + "/archive", "", nil, answer{status: 404, code: fault.NotFound}},
		{"delete", versioned, "DELETE /v1/widgets/" + wid(2).String(), "", nil, answer{status: 204}},
		{"delete: missing", versioned, "DELETE /v1/widgets/" + wid(9).String(), "", nil, answer{status: 404, code: fault.NotFound}},
		{"delete: another tenant's", versioned, "DELETE /v1/widgets/" + wid(2).String(), "", map[string]string{"X-Test-Tenant": stranger.String()},
			answer{status: 404, code: fault.NotFound}},
		{"delete: bad id", versioned, "DELETE /v1/widgets/w2", "", nil, answer{status: 422, code: fault.Validation, field: "id"}},
		{"delete: no tenant", versioned, "DELETE /v1/widgets/w2", "", noTenant, answer{status: 401, code: fault.Unauthenticated}},
		{"own tenant: get without a principal", pinned, "GET /v1/widgets/" + wid(1).String(), "", noTenant, answer{status: 200, body: item(1, "w1")}},
		{"own tenant refuses: list", refusing, "GET /v1/widgets?limit=0", "", nil, answer{status: 403, code: fault.Forbidden}},
		{"own tenant refuses: create", refusing, "POST /v1/widgets", `{"name":""}`, nil, answer{status: 403, code: fault.Forbidden}},
		{"own tenant refuses: update", refusing, "PATCH /v1/widgets/w2", `{"name":""}`, nil, answer{status: 403, code: fault.Forbidden}},
		{"own tenant refuses: delete", refusing, "DELETE /v1/widgets/w2", "", nil, answer{status: 403, code: fault.Forbidden}},
		{"no tenant's: list without a principal", platform, "GET /v1/widgets", "", noTenant, answer{status: 200, body: page(0)}},
		{"no tenant's: get without a principal", platform, "GET /v1/widgets/" + wid(1).String(), "", noTenant, answer{status: 404, code: fault.NotFound}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := mount(widgetRoutes(tt.res, newWidgets()))
			header := map[string]string{"X-Test-Tenant": owner.String()}
			for k, v := range tt.header {
				header[k] = v
			}
			checkAnswer(t, serve(e, tt.request, tt.body, header), tt.want)
		})
	}
}

// widgetRoutes registers the widget routes as a module does with res and
// s: the collection, and an action answered 202.
func widgetRoutes(res httpx.Resource[widget, widgetJSON], s *widgets) func(r *httpx.Router) {
	return func(r *httpx.Router) {
		r.Collection("/widgets", widgetsRead, widgetsWrite, httpx.Collection{
			List:   func(c *gin.Context) error { return res.List(c, s.list) },
			Create: func(c *gin.Context) error { return httpx.Create(c, res, toName, s.create) },
			Get:    func(c *gin.Context) error { return res.Get(c, s.get) },
			Update: func(c *gin.Context) error { return httpx.Update(c, res, toName, s.rename) },
			Delete: func(c *gin.Context) error { return res.Delete(c, s.remove) },
		})
		r.Handle(http.MethodPost, "/widgets/:id/archive", widgetsWrite, httpx.Handle(func(c *gin.Context) error {
			return res.Action(c, http.StatusAccepted, s.get)
		}))
	}
}

// checkAnswer checks w against want: status, Location and ETag, then the
// exact body of a success, or a problem+json document with want's code
// blaming want's field (or none).
func checkAnswer(t *testing.T, w *httptest.ResponseRecorder, want answer) {
	t.Helper()
	if w.Code != want.status || w.Header().Get("Location") != want.location || w.Header().Get("ETag") != want.etag {
		t.Fatalf("got %d Location %q ETag %q, want %d Location %q ETag %q (body %s)", w.Code, w.Header().Get("Location"),
			w.Header().Get("ETag"), want.status, want.location, want.etag, w.Body)
	}
	if want.code == "" {
		if w.Body.String() != want.body {
			t.Errorf("got body %s, want %s", w.Body, want.body)
		}
		return
	}
	var p httpx.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %s %s (%v), want problem+json", w.Header().Get("Content-Type"), w.Body, err)
	}
	var fields []string
	for _, f := range p.Errors {
		fields = append(fields, f.Field)
	}
	if p.Code != want.code || p.Status != want.status || strings.Join(fields, ",") != want.field {
		t.Errorf("got problem %s %d blaming %v, want %s %d blaming %q", p.Code, p.Status, fields, want.code, want.status, want.field)
	}
}

// TestPrincipal: the acting principal, or 401 without one; for
// TenantPrincipal and TenantID, a principal without a tenant (an
// operator's) is none.
func TestPrincipal(t *testing.T) {
	p := identity.Principal{Kind: identity.KindUser, Subject: "u1", TenantID: owner}
	operator := identity.Principal{Kind: identity.KindOperator, Subject: "operator"}
	tests := []struct {
		name           string
		ctx            context.Context
		want           identity.Principal
		wantCode       fault.Code
		wantTenant     identity.Principal // of TenantPrincipal, whose TenantID is TenantID's
		wantTenantCode fault.Code
	}{
		{"principal", identity.WithPrincipal(context.Background(), p), p, "", p, ""},
		{"none", context.Background(), identity.Principal{}, fault.Unauthenticated, identity.Principal{}, fault.Unauthenticated},
		{"operator", identity.WithPrincipal(context.Background(), operator), operator, "", identity.Principal{}, fault.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := gin.CreateTestContext(httptest.NewRecorder())
			c.Request = httptest.NewRequestWithContext(tt.ctx, http.MethodGet, "/v1/me", nil)
			got, err := httpx.Principal(c)
			if !reflect.DeepEqual(got, tt.want) || codeOf(err) != tt.wantCode {
				t.Errorf("Principal: got %+v, %v; want %+v, code %q", got, err, tt.want, tt.wantCode)
			}
			got, err = httpx.TenantPrincipal(c)
			if !reflect.DeepEqual(got, tt.wantTenant) || codeOf(err) != tt.wantTenantCode {
				t.Errorf("TenantPrincipal: got %+v, %v; want %+v, code %q", got, err, tt.wantTenant, tt.wantTenantCode)
			}
			id, err := httpx.TenantID(c)
			if id != tt.wantTenant.TenantID || codeOf(err) != tt.wantTenantCode {
				t.Errorf("TenantID: got %v, %v; want %v, code %q", id, err, tt.wantTenant.TenantID, tt.wantTenantCode)
			}
		})
	}
}

// codeOf is err's fault code, "" for no error.
func codeOf(err error) fault.Code {
	if err == nil {
		return ""
	}
	return fault.CodeOf(err)
}

// TestLimit: a list's limit is 1 to 200, 50 when absent; anything else
// blames limit and reads as 50.
func TestLimit(t *testing.T) {
	tests := []struct {
		query     string
		want      int
		wantBlame bool
	}{
		{"", 50, false}, {"limit=", 50, false}, {"limit=1", 1, false}, {"limit=200", 200, false}, {"limit=7", 7, false},
		{"limit=0", 50, true}, {"limit=201", 50, true}, {"limit=-3", 50, true}, {"limit=2.5", 50, true}, {"limit=+", 50, true},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			c, _ := gin.CreateTestContext(httptest.NewRecorder())
			c.Request = httptest.NewRequest(http.MethodGet, "/v1/widgets?"+tt.query, nil)
			var fields fault.Fields
			got := httpx.Limit(c, &fields)
			blamed := len(fields) == 1 && fields[0].Field == "limit"
			if got != tt.want || blamed != tt.wantBlame || len(fields) > 1 {
				t.Errorf("got %d blaming %v, want %d (blame: %t)", got, fields, tt.want, tt.wantBlame)
			}
		})
	}
}
