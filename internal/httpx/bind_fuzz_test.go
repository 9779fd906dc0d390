package httpx_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// fuzzBody has the field types request bodies use: text, integers (money),
// pointers (merge patches), booleans, arrays of text and of objects,
// free-form objects (settings) and times.
type fuzzBody struct {
	Name      string         `json:"name"`
	Price     int64          `json:"price"`
	Quantity  *int           `json:"quantity"`
	Active    bool           `json:"active"`
	Roles     []string       `json:"roles"`
	Items     []fuzzItem     `json:"items"`
	Settings  map[string]any `json:"settings"`
	ExpiresAt *time.Time     `json:"expires_at"`
}

type fuzzItem struct {
	ProductID string `json:"product_id"`
	Quantity  int64  `json:"quantity"`
}

// FuzzDecodeStrict: whatever the body, DecodeStrict never panics and
// either accepts it, and then it was one valid JSON value whose every
// string (keys included) follows the text rule, or refuses it with a
// validation error naming fields in printable text, so a problem document
// never echoes control characters. Seeds: testdata/fuzz/FuzzDecodeStrict.
func FuzzDecodeStrict(f *testing.F) {
	for _, seed := range []string{
		`{"name":"a","price":2599,"roles":["viewer"],"items":[{"product_id":"p","quantity":1}]}`,
		`{"settings":{"oidc":{"issuer":"https://x","audience":"\u0000"}}}`,
		"{\"name\":\"a\x00b\"}",
		`{"price":1e400}`,
		`{"a":1} {"b":2}`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, dst := range []any{&fuzzBody{}, &map[string]any{}, &[]any{}} {
			err := httpx.DecodeStrict(body, dst)
			if err == nil {
				if !json.Valid(body) {
					t.Fatalf("accepted %q into %T, which is not valid JSON", body, dst)
				}
				checkStrings(t, body)
				continue
			}
			fe, ok := fault.As(err)
			if !ok || fe.Code != fault.Validation || len(fe.Fields) == 0 {
				t.Fatalf("refused %q into %T with %v, want a validation error naming a field", body, dst, err)
			}
			// A field may be named "" (an unknown key that is empty), but
			// never with what the text rule refuses.
			for _, fld := range fe.Fields {
				if !httpx.ValidText(fld.Field) || fld.Message == "" || !httpx.ValidText(fld.Message) {
					t.Fatalf("refused %q: field %q message %q, want both printable and a message", body, fld.Field, fld.Message)
				}
			}
			if !httpx.ValidText(fe.Message) {
				t.Fatalf("refused %q: message %q is not printable", body, fe.Message)
			}
		}
	})
}

// checkStrings fails unless every string of the JSON document body, object
// keys included, follows the text rule.
func checkStrings(t *testing.T, body []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		if s, ok := tok.(string); ok && (!utf8.ValidString(s) || !httpx.ValidText(s)) {
			t.Fatalf("accepted %q holding the string %q, which breaks the text rule", body, s)
		}
	}
}
