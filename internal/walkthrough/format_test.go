package walkthrough

import (
	"strings"
	"testing"
)

// TestParse proves which lines become commands and expected output, and
// that a walk-through that would check nothing is refused.
func TestParse(t *testing.T) {
	doc := "# Title\n\n```sh\n$ not run\n```\n\n```console\n" +
		"$ curl -s $BASE/healthz\n{\"status\":\"ok\"}\n" +
		"$ curl -s $BASE/v1/orders/$O \\\n    -H \"Authorization: Bearer $KEY\"   # eventually\n" +
		"HTTP/1.1 200 OK\n\n{}\n\n" +
		"$ export X=$(echo 1)\n```\n"
	cmds, err := Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 3 {
		t.Fatalf("got %d commands, want 3: %+v", len(cmds), cmds)
	}
	tests := []struct {
		got, want any
	}{
		{cmds[0].Line, 8},
		{cmds[0].Text, "curl -s $BASE/healthz"},
		{strings.Join(cmds[0].Want, "|"), `{"status":"ok"}`},
		{cmds[0].Eventually, false},
		{cmds[1].Text, "curl -s $BASE/v1/orders/$O \\\n    -H \"Authorization: Bearer $KEY\"   # eventually"},
		{strings.Join(cmds[1].Want, "|"), "HTTP/1.1 200 OK||{}"},
		{cmds[1].Eventually, true},
		{len(cmds[2].Want), 0},
	}
	for i, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("check %d: got %#v, want %#v", i, tt.got, tt.want)
		}
	}

	for _, bad := range []struct{ name, doc string }{
		{"no console block", "```sh\n$ ls\n```\n"},
		{"output before any command", "```console\nhello\n$ ls\n```\n"},
		{"unclosed block", "```console\n$ ls\n"},
		{"continued past the block", "```console\n$ ls \\\n```\n"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			if cmds, err := Parse(strings.NewReader(bad.doc)); err == nil {
				t.Fatalf("got %+v and no error, want an error", cmds)
			}
		})
	}
}

// TestMatch proves that placeholders and "…" absorb what changes from run
// to run, and that a changed status, header, field name or value, or a
// missing or extra line, does not match.
func TestMatch(t *testing.T) {
	created := "HTTP/1.1 201 Created\r\nContent-Type: application/json; charset=utf-8\r\nEtag: \"1\"\r\n" +
		"Location: /v1/products/01a24829-0c4d-7198-ba7c-996f111a649b\r\nX-Request-Id: 01a24829\r\nDate: Sat, 05 Dec 2026 21:42:59 GMT\r\n\r\n" +
		`{"id":"01a24829-0c4d-7198-ba7c-996f111a649b","sku":"TNT-1","price":999,"version":1,"created_at":"2026-12-05T21:42:59.405199Z"}`
	tests := []struct {
		name string
		want string // lines separated by \n
		got  string
		ok   bool
	}{
		{"exact", `{"status":"ok"}`, `{"status":"ok"}` + "\n", true},
		{"placeholders and headers left out", "HTTP/1.1 201 Created\nEtag: \"1\"\nLocation: /v1/products/<id>\n" +
			`{"id":"<id>","sku":"TNT-1","price":999,"version":1,"created_at":"<timestamp>"}`, created, true},
		{"a blank line after the headers", "HTTP/1.1 201 Created\nEtag: \"1\"\n\n" +
			`{"id":"<id>",…}`, created, true},
		{"ellipsis inside a line", "HTTP/1.1 201 Created\n" + `{"id":"<id>","sku":"TNT-1",…,"version":1,…}`, created, true},
		{"a changed status", "HTTP/1.1 200 OK\n" + `{"id":"<id>",…}`, created, false},
		{"a changed header", "HTTP/1.1 201 Created\nEtag: \"2\"\n" + `{"id":"<id>",…}`, created, false},
		{"a header that is missing", "HTTP/1.1 201 Created\nRetry-After: 1\n" + `{"id":"<id>",…}`, created, false},
		{"a renamed field", "HTTP/1.1 201 Created\n" + `{"id":"<id>","code":"TNT-1",…}`, created, false},
		{"a changed value", "HTTP/1.1 201 Created\n" + `{"id":"<id>",…,"price":1099,…}`, created, false},
		{"a placeholder does not cross quotes", `{"status":"<x>"}`, `{"status":"a","b":"c"}`, false},
		{"a placeholder needs a character", `{"status":"<x>"}`, `{"status":""}`, false},
		{"a missing line", "a\nb", "a", false},
		{"an extra line", "a", "a\nb", false},
		{"status lines are no headers", "HTTP/1.1 200 OK\nHTTP/1.1 429 Too Many Requests",
			"HTTP/1.1 200 OK\r\nHTTP/1.1 429 Too Many Requests\r\n", true},
		{"a gap line absorbs lines", "first\n…\nlast", "first\nx\ny\nlast", true},
		{"a gap line absorbs none", "first\n...\nlast", "first\nlast", true},
		{"a gap still needs what follows", "first\n…\nlast", "first\nx", false},
		{"no output wanted", "", "", true},
		{"output not wanted", "", "surprise", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			if tt.want != "" {
				want = strings.Split(tt.want, "\n")
			}
			err := Match(want, Normalize(want, tt.got))
			if (err == nil) != tt.ok {
				t.Fatalf("got %v, want match %v\nwant:\n%s\ngot:\n%s", err, tt.ok, tt.want, tt.got)
			}
		})
	}
}
