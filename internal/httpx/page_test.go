package httpx_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/tenantd/tenantd/internal/httpx"
)

// TestRenderList: of up to limit+1 items, the first limit are rendered in
// order, and only an extra one makes a next page, whose cursor is that of
// the last item shown; no items is an empty array, not null.
func TestRenderList(t *testing.T) {
	render := func(n int) string { return "item " + strconv.Itoa(n) }
	cursorOf := func(n int) string { return "after-" + strconv.Itoa(n) }
	tests := []struct {
		name  string
		items []int
		limit int
		want  string
	}{
		{"none", nil, 2, `{"data":[],"next_cursor":null}`},
		{"fewer than the limit", []int{7}, 2, `{"data":["item 7"],"next_cursor":null}`},
		{"as many as the limit", []int{7, 8}, 2, `{"data":["item 7","item 8"],"next_cursor":null}`},
		{"one more", []int{7, 8, 9}, 2, `{"data":["item 7","item 8"],"next_cursor":"after-8"}`},
		{"limit 1", []int{7, 8}, 1, `{"data":["item 7"],"next_cursor":"after-7"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(httpx.RenderList(tt.items, tt.limit, render, cursorOf))
			if err != nil || string(got) != tt.want {
				t.Errorf("got %s (%v), want %s", got, err, tt.want)
			}
		})
	}
}
