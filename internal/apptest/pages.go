package apptest

import (
	"testing"

	"github.com/google/uuid"
)

// maxPages is how many pages Pages reads before it fails the test.
const maxPages = 100

// Pages reads a keyset-paged list from its start, as a client of a
// module's service would: list returns the items after a cursor (uuid.Nil
// for the first page), at most limit of them and one more when another
// page follows, the way tenantd's stores answer; id is an item's cursor.
// It returns every item in order and the size of each page, and fails the
// test on an error of list or when the list has not ended after maxPages
// pages.
func Pages[T any](t testing.TB, limit int, list func(after uuid.UUID) ([]T, error), id func(T) uuid.UUID) (items []T, sizes []int) {
	t.Helper()
	after := uuid.Nil
	for range maxPages {
		page, err := list(after)
		if err != nil {
			t.Fatalf("list page %d: %v", len(sizes)+1, err)
		}
		more := len(page) > limit
		if more {
			page = page[:limit]
		}
		sizes = append(sizes, len(page))
		items = append(items, page...)
		if !more {
			return items, sizes
		}
		after = id(page[len(page)-1])
	}
	t.Fatalf("the list has not ended after %d pages of %d", maxPages, limit)
	return nil, nil
}
