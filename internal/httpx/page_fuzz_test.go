package httpx_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// fuzzContext is a gin context for a GET whose raw query is rawQuery and
// whose path parameter id is id.
func fuzzContext(rawQuery, id string) (*gin.Context, *httptest.ResponseRecorder) {
	w := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(w)
	c.Request = &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/v1/things/x", RawQuery: rawQuery},
		Header: http.Header{}}
	c.Params = gin.Params{{Key: "id", Value: id}}
	return c, w
}

// FuzzParsePage: whatever the query, ParsePage never panics; it answers a
// limit from 1 to 200 and, for a cursor, the id NewList encoded, or a
// validation error naming only limit and cursor. Seeds:
// testdata/fuzz/FuzzParsePage.
func FuzzParsePage(f *testing.F) {
	id := uuid.MustParse("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
	for _, seed := range []string{
		"", "limit=50", "limit=0", "limit=201", "limit=-1", "limit=1e3", "limit=9223372036854775808",
		"cursor=" + base64.RawURLEncoding.EncodeToString(id[:]), "cursor=%00", "cursor=AAAA", "limit=10&limit=20&cursor=",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		c, _ := fuzzContext(rawQuery, "")
		p, err := httpx.ParsePage(c)
		if err != nil {
			fe, ok := fault.As(err)
			if !ok || fe.Code != fault.Validation || len(fe.Fields) == 0 {
				t.Fatalf("query %q: got %v, want a validation error", rawQuery, err)
			}
			for _, fld := range fe.Fields {
				if fld.Field != "limit" && fld.Field != "cursor" {
					t.Fatalf("query %q: got field %q, want limit or cursor", rawQuery, fld.Field)
				}
			}
			return
		}
		if p.Limit < 1 || p.Limit > 200 {
			t.Fatalf("query %q: got limit %d, want 1 to 200", rawQuery, p.Limit)
		}
		if cur := c.Query("cursor"); cur != "" {
			raw, derr := base64.RawURLEncoding.DecodeString(cur)
			if derr != nil || len(raw) != 16 || uuid.UUID(raw) != p.After {
				t.Fatalf("query %q: accepted cursor %q as %s, want the id it encodes", rawQuery, cur, p.After)
			}
		} else if p.After != uuid.Nil {
			t.Fatalf("query %q: got after %s without a cursor", rawQuery, p.After)
		}
	})
}

// FuzzParseID: a path id is a UUID or a 422 naming it, never a panic.
func FuzzParseID(f *testing.F) {
	for _, seed := range []string{"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "", "not-a-uuid", "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}",
		"urn:uuid:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", "\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		c, _ := fuzzContext("", id)
		got, err := httpx.ParseID(c, "id")
		if err != nil {
			fe, ok := fault.As(err)
			if !ok || fe.Code != fault.Validation || len(fe.Fields) != 1 || fe.Fields[0].Field != "id" {
				t.Fatalf("id %q: got %v, want a validation error naming id", id, err)
			}
			return
		}
		if want, perr := uuid.Parse(id); perr != nil || want != got {
			t.Fatalf("id %q: got %s, want what uuid.Parse reads", id, got)
		}
	})
}

// FuzzCheckParams: whatever the query and path parameter, CheckParams
// never panics and lets a request through exactly when Go's query parser
// reads the whole query (url.ParseQuery: no ';', no malformed escape) and
// every query parameter name and value and the path parameter follow the
// text rule; otherwise it answers 422 problem+json naming fields in
// printable text.
// Seeds: testdata/fuzz/FuzzCheckParams.
func FuzzCheckParams(f *testing.F) {
	for _, seed := range [][2]string{
		{"status=pending", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}, {"type=order.%00placed", "x"}, {"a%1b=1", "x"},
		{"q=%C2%85", "x"}, {"q=%FF", "x"}, {"q=tab%09ok", "x"}, {"", "a\x00b"}, {"q=%zz", "x"}, {"q=😀", "é"},
		{"after=ab;cd", "x"}, {"a;b=1&c=%00", "x"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, rawQuery, id string) {
		c, w := fuzzContext(rawQuery, id)
		httpx.CheckParams(c)
		_, syntaxErr := url.ParseQuery(rawQuery)
		want := httpx.ValidText(id) && syntaxErr == nil
		for name, values := range c.Request.URL.Query() {
			want = want && httpx.ValidText(name)
			for _, v := range values {
				want = want && httpx.ValidText(v)
			}
		}
		if passed := !c.IsAborted(); passed != want {
			t.Fatalf("query %q, id %q: passed %t, want %t", rawQuery, id, passed, want)
		}
		if want {
			return
		}
		if w.Code != http.StatusUnprocessableEntity || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("query %q, id %q: got %d %s, want 422 problem+json", rawQuery, id, w.Code, w.Header().Get("Content-Type"))
		}
		var p httpx.Problem
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Code != fault.Validation || len(p.Errors) == 0 {
			t.Fatalf("query %q, id %q: got body %q (%v), want a validation problem", rawQuery, id, w.Body.Bytes(), err)
		}
		for _, fld := range p.Errors {
			if !httpx.ValidText(fld.Field) {
				t.Fatalf("query %q, id %q: the problem names field %q, which is not printable", rawQuery, id, fld.Field)
			}
		}
	})
}
