package openapi_test

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/openapi"
)

// operatorPermission is the x-permission of every /admin/v1 operation.
const operatorPermission = "platform:operate"

func load(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		t.Fatalf("load the document: %v", err)
	}
	return doc
}

// TestDocumentIsValid: the embedded document is OpenAPI 3.1 that
// kin-openapi loads and validates, with the info the contract asks for.
func TestDocumentIsValid(t *testing.T) {
	doc := load(t)
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi: got %q, want 3.1.0", doc.OpenAPI)
	}
	if doc.Info.Title != "tenantd" || doc.Info.Version != "1" {
		t.Errorf("info: got %q %q, want tenantd 1", doc.Info.Title, doc.Info.Version)
	}
	if len(doc.Servers) != 1 || doc.Servers[0].URL != "/" {
		t.Errorf("servers: got %v, want one relative server /", doc.Servers)
	}
	for _, name := range []string{"bearer", "operatorBearer"} {
		if s := doc.Components.SecuritySchemes[name]; s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" {
			t.Errorf("security scheme %s: got %v, want http bearer", name, s)
		}
	}
}

// TestComponentNamesUnique: no two components share a name, in any section,
// once case and punctuation are dropped as a type name drops them. Code
// generators (oapi-codegen in client/) make one type per component and
// refuse a document where a parameter and a schema are both Cursor.
func TestComponentNamesUnique(t *testing.T) {
	doc := load(t)
	c := doc.Components
	sections := map[string][]string{
		"schemas":       slices.Collect(maps.Keys(c.Schemas)),
		"parameters":    slices.Collect(maps.Keys(c.Parameters)),
		"headers":       slices.Collect(maps.Keys(c.Headers)),
		"requestBodies": slices.Collect(maps.Keys(c.RequestBodies)),
		"responses":     slices.Collect(maps.Keys(c.Responses)),
	}
	typeName := func(name string) string {
		return strings.ToLower(strings.Map(func(r rune) rune {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				return r
			}
			return -1
		}, name))
	}
	seen := map[string]string{}
	for section, names := range sections {
		for _, name := range names {
			key := typeName(name)
			if other, dup := seen[key]; dup {
				t.Errorf("component %s in %s has the type name of one in %s", name, section, other)
			}
			seen[key] = section
		}
	}
	if len(seen) < 50 {
		t.Errorf("got %d component names, want the document's 80 or so", len(seen))
	}
}

type operation struct {
	method, path string
	op           *openapi3.Operation
}

func operations(doc *openapi3.T) []operation {
	var out []operation
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			out = append(out, operation{method, path, op})
		}
	}
	return out
}

// TestOperations: every operation says what it is, who may call it and what
// it answers, the same way.
func TestOperations(t *testing.T) {
	doc := load(t)
	permissions := map[string]bool{operatorPermission: true}
	for _, p := range doc.Components.Schemas["Permission"].Value.Enum {
		permissions[p.(string)] = true
	}
	ids := map[string]string{}
	for _, o := range operations(doc) {
		name := o.method + " " + o.path
		t.Run(name, func(t *testing.T) {
			op := o.op
			if op.OperationID == "" || op.Summary == "" || len(op.Tags) != 1 {
				t.Errorf("got operationId %q, summary %q, tags %v; want all set, one tag", op.OperationID, op.Summary, op.Tags)
			}
			if other, dup := ids[op.OperationID]; dup {
				t.Errorf("operationId %q is also %s", op.OperationID, other)
			}
			ids[op.OperationID] = name

			perm, _ := op.Extensions["x-permission"].(string)
			var scheme string
			if op.Security != nil && len(*op.Security) == 1 {
				for s := range (*op.Security)[0] {
					scheme = s
				}
			}
			switch {
			case strings.HasPrefix(o.path, "/v1/"):
				if !permissions[perm] || perm == operatorPermission || scheme != "bearer" {
					t.Errorf("got x-permission %q, security %q; want a tenant permission and bearer", perm, scheme)
				}
			case strings.HasPrefix(o.path, "/admin/v1/"):
				if perm != operatorPermission || scheme != "operatorBearer" {
					t.Errorf("got x-permission %q, security %q; want %s and operatorBearer", perm, scheme, operatorPermission)
				}
			default:
				if perm != "" || op.Security == nil || len(*op.Security) != 0 {
					t.Errorf("got x-permission %q, security %v; an unauthenticated route wants none and security []", perm, op.Security)
				}
			}

			if perm != "" && !strings.Contains(op.Description, "`"+perm+"`") {
				t.Errorf("the description does not name the permission %s for readers of /docs: %q", perm, op.Description)
			}
			if o.method == http.MethodPost && strings.HasPrefix(o.path, "/v1/") && !hasParameter(op, "header", "Idempotency-Key") {
				t.Error("a /v1 POST must take the Idempotency-Key header")
			}
			if strings.HasPrefix(o.path, "/v1/") && !hasParameter(op, "header", "X-Tenant") {
				t.Error("a /v1 operation must take the X-Tenant header")
			}
			for status, r := range op.Responses.Map() {
				if r.Value.Headers["X-Request-ID"] == nil {
					t.Errorf("response %s does not declare X-Request-ID", status)
				}
				code, _ := strconv.Atoi(status)
				// /readyz answers 503 with its checks, not a problem.
				if code >= 400 && op.OperationID != "getReadiness" && r.Value.Content.Get("application/problem+json") == nil {
					t.Errorf("error response %s is not application/problem+json", status)
				}
			}
			if op.RequestBody != nil {
				mt := op.RequestBody.Value.Content.Get("application/json")
				if mt == nil {
					t.Fatal("the request body is not application/json")
				}
				closedObjects(t, "request body", mt.Schema, map[*openapi3.Schema]bool{})
			}
		})
	}
}

func hasParameter(op *openapi3.Operation, in, name string) bool {
	return slices.ContainsFunc(op.Parameters, func(p *openapi3.ParameterRef) bool {
		return p.Value.In == in && p.Value.Name == name
	})
}

// closedObjects fails for every object schema under s that admits unknown
// properties: the API rejects unknown fields with 422.
func closedObjects(t *testing.T, at string, s *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) {
	t.Helper()
	if s == nil || s.Value == nil || seen[s.Value] {
		return
	}
	seen[s.Value] = true
	v := s.Value
	if v.Type.Is("object") {
		if ap := v.AdditionalProperties.Has; ap == nil || *ap {
			t.Errorf("%s: object %s does not set additionalProperties: false", at, s.Ref)
		}
	}
	for name, p := range v.Properties {
		closedObjects(t, at+"."+name, p, seen)
	}
	closedObjects(t, at+"[]", v.Items, seen)
}

// TestProblemCodes: the document's error codes are exactly the codes
// internal/fault defines.
func TestProblemCodes(t *testing.T) {
	doc := load(t)
	var documented []string
	for _, c := range doc.Components.Schemas["ProblemCode"].Value.Enum {
		documented = append(documented, c.(string))
	}
	defined := faultCodes(t)
	slices.Sort(documented)
	slices.Sort(defined)
	if !slices.Equal(documented, defined) {
		t.Errorf("ProblemCode enum: got %v, want the codes of internal/fault %v", documented, defined)
	}
}

// faultCodes reads the string constants of type Code from internal/fault.
func faultCodes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../fault/fault.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || vs.Type == nil || len(vs.Values) != 1 {
			return true
		}
		if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
			return true
		}
		if lit, ok := vs.Values[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			codes = append(codes, s)
		}
		return true
	})
	if len(codes) < 10 {
		t.Fatalf("found %d codes in internal/fault: %v; the parser no longer understands the file", len(codes), codes)
	}
	return codes
}

func serve(t *testing.T, h gin.HandlerFunc, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	gin.SetMode(gin.TestMode)
	e := gin.New()
	e.GET("/x", h)
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// TestHandlers: each route serves its embedded content with an ETag, and
// answers 304 when the client has it.
func TestHandlers(t *testing.T) {
	script, err := os.ReadFile("viewer/redoc.standalone.js")
	if err != nil {
		t.Fatal(err)
	}
	if len(script) > 2<<20 {
		t.Errorf("viewer: %d bytes; keep it under 2 MiB", len(script))
	}
	tests := []struct {
		name        string
		handler     gin.HandlerFunc
		contentType string
		body        []byte
	}{
		{"spec", openapi.Spec(), "application/json", openapi.Document()},
		{"docs", openapi.Docs(), "text/html; charset=utf-8", nil},
		{"viewer", openapi.Viewer(), "text/javascript; charset=utf-8", script},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, tt.handler, nil)
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != tt.contentType {
				t.Fatalf("got %d %q, want 200 %q", rec.Code, rec.Header().Get("Content-Type"), tt.contentType)
			}
			if tt.body != nil && !bytes.Equal(rec.Body.Bytes(), tt.body) {
				t.Errorf("body: got %d bytes, want the embedded %d", rec.Body.Len(), len(tt.body))
			}
			tag := rec.Header().Get("ETag")
			if len(tag) < 10 || tag[0] != '"' {
				t.Fatalf("ETag: got %q, want a strong tag", tag)
			}
			for _, inm := range []string{tag, `W/` + tag, `"other", ` + tag, "*"} {
				if again := serve(t, tt.handler, map[string]string{"If-None-Match": inm}); again.Code != http.StatusNotModified || again.Body.Len() != 0 {
					t.Errorf("If-None-Match %s: got %d with %d bytes, want 304 and no body", inm, again.Code, again.Body.Len())
				}
			}
			if again := serve(t, tt.handler, map[string]string{"If-None-Match": `"other"`}); again.Code != http.StatusOK {
				t.Errorf("If-None-Match of another tag: got %d, want 200", again.Code)
			}
		})
	}
}

// TestDocsPage: the page loads the document and the viewer from this
// server, never from elsewhere, and its policy forbids anything else.
func TestDocsPage(t *testing.T) {
	rec := serve(t, openapi.Docs(), nil)
	page := rec.Body.String()
	for _, want := range []string{`<redoc spec-url="openapi.json">`, `<script src="docs/redoc.standalone.js">`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s:\n%s", want, page)
		}
	}
	// The relative references resolve to the routes this package serves.
	for _, ref := range []string{"openapi.json", "docs/redoc.standalone.js"} {
		if got := "/" + ref; got != openapi.SpecPath && got != openapi.ViewerPath {
			t.Errorf("%s resolves to %s, which is not served", ref, got)
		}
	}
	if strings.Contains(page, "//") {
		t.Errorf("page refers to another origin:\n%s", page)
	}
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
}
