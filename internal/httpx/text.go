package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
)

// The API's rule for text, the same in JSON bodies, query parameters and
// path parameters: valid UTF-8 without U+0000 or any other control
// character (C0 U+0000–U+001F, DEL U+007F, C1 U+0080–U+009F), except tab,
// line feed and carriage return, which multi-line text may hold. Fields
// that are one line (names, identifiers) refuse those three too, in their
// own validation. PostgreSQL cannot store U+0000 at all, and control
// characters have no business in stored text or log lines.

// textMessage is the message naming a field whose text breaks the rule.
const textMessage = "must be valid UTF-8 without U+0000 or other control characters"

// rawMessage names a field whose string holds an unescaped control
// character, which JSON does not allow.
const rawMessage = textMessage + " (JSON allows none unescaped: write tab, line feed and carriage return as \\t, \\n and \\r)"

// refused reports whether r breaks the text rule.
func refused(r rune) bool {
	return unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r'
}

// ValidText reports whether s follows the API's text rule.
func ValidText(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, refused) < 0
}

// printable replaces what breaks the text rule in a name sent back to the
// client, so a problem document never echoes control characters.
func printable(s string) string {
	return strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if refused(r) {
			return utf8.RuneError
		}
		return r
	}, s), string(utf8.RuneError))
}

// jsonFrame is an object or array being walked by checkJSONText.
type jsonFrame struct {
	path    string
	object  bool
	wantKey bool   // object: the next token is a key or the closing brace
	key     string // object: the key of the value being read
	index   int    // array: the index of the value being read
}

// valuePath is the path of the value the frame is reading: "items[2]",
// "settings.oidc.issuer".
func (f *jsonFrame) valuePath() string {
	if !f.object {
		return f.path + "[" + strconv.Itoa(f.index) + "]"
	}
	if f.path == "" {
		return f.key
	}
	return f.path + "." + f.key
}

// checkJSONText walks every string of a JSON document, object keys
// included, and returns a validation error naming the first field that
// breaks the text rule. A raw control character inside a string (invalid
// JSON) is named the same way; other syntax errors are left to the
// decoder.
func checkJSONText(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []*jsonFrame
	where := func() string {
		if len(stack) == 0 {
			return "body"
		}
		top := stack[len(stack)-1]
		if top.object && top.wantKey {
			if top.path == "" {
				return "body"
			}
			return top.path
		}
		return printable(top.valuePath())
	}
	done := func() { // a value of the top frame has been read
		if len(stack) == 0 {
			return
		}
		if top := stack[len(stack)-1]; top.object {
			top.wantKey = true
		} else {
			top.index++
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			// encoding/json says "in string literal" only of a raw
			// control character (below U+0020) inside a string.
			var syntax *json.SyntaxError
			if errors.As(err, &syntax) && strings.HasSuffix(syntax.Error(), "in string literal") {
				return fault.Invalid(fault.Field(where(), rawMessage))
			}
			return nil
		}
		if len(stack) > 0 {
			if top := stack[len(stack)-1]; top.object && top.wantKey {
				if key, ok := tok.(string); ok {
					if !ValidText(key) {
						return fault.Invalid(fault.Field(where(), "has a key that "+textMessage))
					}
					top.key, top.wantKey = key, false
					continue
				}
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				path := ""
				if len(stack) > 0 {
					path = stack[len(stack)-1].valuePath()
				}
				stack = append(stack, &jsonFrame{path: path, object: t == '{', wantKey: t == '{'})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
		case string:
			if !ValidText(t) {
				return fault.Invalid(fault.Field(where(), textMessage))
			}
			done()
		default:
			done()
		}
	}
}

// The messages naming a query parameter that Go's query parser would drop
// (url.ParseQuery's errors): a handler would see the request without it.
const (
	semicolonMessage = "holds a ';', which does not separate query parameters: separate them with '&', and write a ';' as %3B"
	escapeMessage    = "has a malformed percent-escape: '%' must be followed by two hexadecimal digits"
)

// checkQuerySyntax adds to f what makes url.ParseQuery refuse rawQuery, so
// that a handler would see the query without some of its parameters: each
// parameter holding a ';', or whose name or value has a malformed
// percent-escape, named (as sent when its name cannot be decoded); else,
// the whole query (more parameters than the parser reads).
func checkQuerySyntax(rawQuery string, f *fault.Fields) {
	if _, err := url.ParseQuery(rawQuery); err == nil {
		return
	}
	before := len(*f)
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, nameErr := url.QueryUnescape(rawName)
		if nameErr != nil {
			name = rawName
		}
		name = printable(name)
		_, valueErr := url.QueryUnescape(rawValue)
		switch {
		case strings.Contains(pair, ";"):
			f.Add(name, semicolonMessage)
		case nameErr != nil:
			f.Add(name, "is a query parameter name that "+escapeMessage)
		case valueErr != nil:
			f.Add(name, escapeMessage)
		}
	}
	if len(*f) == before {
		f.Add("query", "has more parameters than the API reads")
	}
}

// CheckParams refuses a request whose query parameters (names or values)
// or path parameters break the text rule, or whose query Go's parser
// would read without some of its parameters (checkQuerySyntax): 422
// naming each one. Every route of a Router runs it after authorization,
// so handlers and the database only ever see text that follows the rule,
// and every parameter the client sent.
func CheckParams(c *gin.Context) {
	var f fault.Fields
	checkQuerySyntax(c.Request.URL.RawQuery, &f)
	query := c.Request.URL.Query()
	names := make([]string, 0, len(query))
	for name := range query {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !ValidText(name) {
			f.Add(printable(name), "is a query parameter name that "+textMessage)
			continue
		}
		for _, v := range query[name] {
			if !ValidText(v) {
				f.Add(name, textMessage)
				break
			}
		}
	}
	for _, p := range c.Params {
		if !ValidText(p.Value) {
			f.Add(p.Key, textMessage)
		}
	}
	if err := f.Err(); err != nil {
		Error(c, err)
		return
	}
	c.Next()
}
