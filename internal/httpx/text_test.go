package httpx_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// TestDecodeStrictRefusesControlCharacters: any string of a body, at any
// depth and object keys included, holding U+0000 (escaped or raw) or
// another control character but tab, line feed and carriage return is a
// 422 naming the field.
func TestDecodeStrictRefusesControlCharacters(t *testing.T) {
	cases := []struct {
		name      string
		body      string
		wantField string // "" for accepted
	}{
		{"escaped NUL", `{"customer_id":"a\u0000b"}`, "customer_id"},
		{"raw NUL", "{\"customer_id\":\"a\x00b\"}", "customer_id"},
		{"raw NUL in a nested key's value", "{\"settings\":{\"oidc\":{\"issuer\":\"https://x\x00\"}}}", "settings.oidc.issuer"},
		{"escaped NUL nested", `{"settings":{"oidc":{"audience":"\u0000"}}}`, "settings.oidc.audience"},
		{"in an array", `{"roles":["viewer","ad\u0000min"]}`, "roles[1]"},
		{"in an array of objects", `{"items":[{"product_id":"p"},{"product_id":"\u001b[31m"}]}`, "items[1].product_id"},
		{"after an array", `{"roles":["a"],"name":"\u0007"}`, "name"},
		{"in a key", `{"a\u0000b":1}`, "body"},
		{"in a nested key", `{"settings":{"x\u0001":1}}`, "settings"},
		{"DEL", `{"name":"a\u007fb"}`, "name"},
		{"C1 control", `{"name":"a\u0085b"}`, "name"},
		{"unit separator", `{"name":"a\u001fb"}`, "name"},
		{"raw escape byte", "{\"name\":\"a\x1bb\"}", "name"},
		{"tab, newline, carriage return", `{"name":"a\tb\nc\rd"}`, ""},
		{"line separator and emoji", `{"name":"a\u2028b 😀 é"}`, ""},
		{"numbers, booleans and nulls", `{"a":1,"b":true,"c":null,"d":[1,2,{"e":"f"}]}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var dst map[string]any
			err := httpx.DecodeStrict([]byte(tc.body), &dst)
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("got %v, want accepted", err)
				}
				return
			}
			fe, ok := fault.As(err)
			if !ok || fe.Code != fault.Validation || len(fe.Fields) != 1 {
				t.Fatalf("got %v, want one validation error", err)
			}
			if fe.Fields[0].Field != tc.wantField {
				t.Fatalf("got field %q (%s), want %q", fe.Fields[0].Field, fe.Fields[0].Message, tc.wantField)
			}
		})
	}
}

// TestDecodeStrictStillReportsOtherErrors: the text walk leaves every other
// mistake to the decoder.
func TestDecodeStrictStillReportsOtherErrors(t *testing.T) {
	var dst struct {
		Price int `json:"price"`
	}
	for body, field := range map[string]string{`{"price":"x"}`: "price", `{"colour":"red"}`: "colour", `{"price":1`: "body"} {
		fe, ok := fault.As(httpx.DecodeStrict([]byte(body), &dst))
		if !ok || len(fe.Fields) == 0 || fe.Fields[0].Field != field {
			t.Fatalf("%s: got %v, want a 422 naming %s", body, fe, field)
		}
	}
}

// TestCheckParams: query parameters (names and values) and path parameters
// follow the same rule, with a 422 naming each.
func TestCheckParams(t *testing.T) {
	gin.SetMode(gin.TestMode)
	e := gin.New()
	e.GET("/things/:name", httpx.CheckParams, func(c *gin.Context) { c.Status(http.StatusNoContent) })
	cases := []struct {
		target    string
		wantField string
	}{
		{"/things/ok?type=order.placed&actor=api_key:1", ""},
		{"/things/ok?note=a%09b", ""},
		{"/things/ok?type=a%00b", "type"},
		{"/things/ok?actor=%01", "actor"},
		{"/things/ok?resource=%7F", "resource"},
		{"/things/ok?resource=%C2%85", "resource"},
		{"/things/ok?customer_id=%FF", "customer_id"},
		{"/things/ok?a%00b=1", "a\uFFFDb"},
		{"/things/a%00b", "name"},
		{"/things/ok?type=x&type=%00", "type"},
		// What Go's query parser drops, a handler would never see: 422
		// too, naming the parameter (as sent when its name cannot be
		// decoded).
		{"/things/ok?after=ab;cd", "after"},
		{"/things/ok?limit=5&after=ab;cd", "after"},
		{"/things/ok?a;b=1", "a;b"},
		{"/things/ok?a%00;=1", "a\uFFFD;"},
		{"/things/ok?after=ab%3Bcd", ""},
		{"/things/ok?after=%zz", "after"},
		{"/things/ok?q=%", "q"},
		{"/things/ok?a%zz=1", "a%zz"},
		{"/things/ok?note=100%25", ""},
	}
	for _, tc := range cases {
		t.Run(tc.target, func(t *testing.T) {
			checkParamsAnswer(t, e, tc.target, tc.wantField)
		})
	}
}

// TestCheckParamsTooManyParameters: a query with more parameters than Go's
// parser reads (it reads none of them then) is a 422 naming the query.
func TestCheckParamsTooManyParameters(t *testing.T) {
	gin.SetMode(gin.TestMode)
	e := gin.New()
	e.GET("/things", httpx.CheckParams, func(c *gin.Context) { c.Status(http.StatusNoContent) })
	checkParamsAnswer(t, e, "/things?"+strings.Repeat("a=1&", 20000)+"a=1", "query")
}

// checkParamsAnswer fails unless e answers GET target 204 (wantField "")
// or 422 problem+json naming wantField alone.
func checkParamsAnswer(t *testing.T, e *gin.Engine, target, wantField string) {
	t.Helper()
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	if wantField == "" {
		if w.Code != http.StatusNoContent {
			t.Fatalf("got %d %s, want 204", w.Code, w.Body)
		}
		return
	}
	var p httpx.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("decode %s: %v", w.Body, err)
	}
	if w.Code != http.StatusUnprocessableEntity || p.Code != fault.Validation || len(p.Errors) != 1 || p.Errors[0].Field != wantField {
		t.Fatalf("got %d %s, want 422 naming %q", w.Code, w.Body, wantField)
	}
}
