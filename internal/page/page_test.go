package page_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/page"
	"github.com/tenantd/tenantd/internal/testenv"
)

// row is a row of the test's table: n is the rank of its id.
type row struct {
	ID uuid.UUID
	N  int
}

// rank is the model the tests convert rows to: the row's n.
func rank(r row) (int, error) { return r.N, nil }

// key(2r) is the id of the row of rank r; an odd argument falls between
// two rows' ids.
func key(i int) uuid.UUID { return uuid.UUID{15: byte(i + 2)} }

// rankedTable creates a table of the test's own as the owner, with n rows
// of ids key(0), key(2) … and n 0 to n-1, inserted in reverse order so that
// only an ORDER BY id reads them in rank order. It returns the table's
// query.
func rankedTable(t *testing.T, n int) (table func() *gorm.DB) {
	t.Helper()
	d := testenv.Get(t).OpenOwnerDB(t).Unscoped(t.Context())
	name := "page_rows_" + testenv.RandomHex(4)
	if err := d.Exec("CREATE TABLE " + name + " (id uuid PRIMARY KEY, n int NOT NULL)").Error; err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	for i := n - 1; i >= 0; i-- {
		if err := d.Exec("INSERT INTO "+name+" (id, n) VALUES (?, ?)", key(2*i), i).Error; err != nil {
			t.Fatalf("insert into %s: %v", name, err)
		}
	}
	return func() *gorm.DB { return d.Table(name) }
}

// TestFind: a page is the rows after the cursor id in id order, one more
// than the limit when there are that many, within the query's own
// conditions.
func TestFind(t *testing.T) {
	table := rankedTable(t, 6)
	even := func() *gorm.DB { return table().Where("n % 2 = 0") }
	tests := []struct {
		name  string
		q     func() *gorm.DB
		after uuid.UUID
		limit int
		want  []int
	}{
		{"first page", table, uuid.Nil, 2, []int{0, 1, 2}},
		{"after a cursor", table, key(2), 2, []int{2, 3, 4}},
		{"a cursor between rows (a deleted row's)", table, key(3), 2, []int{2, 3, 4}},
		{"last page", table, key(6), 2, []int{4, 5}},
		{"after the last row", table, key(10), 2, nil},
		{"limit beyond the rows", table, uuid.Nil, 10, []int{0, 1, 2, 3, 4, 5}},
		{"within the query's conditions", even, key(0), 1, []int{2, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := page.Find(tt.q(), tt.after, tt.limit, rank)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

// TestFindErrors: the query's error, or the first toModel error, is
// Find's, without a page.
func TestFindErrors(t *testing.T) {
	table := rankedTable(t, 3)
	errRank := errors.New("rank refused")
	refuseOne := func(r row) (int, error) {
		if r.N == 1 {
			return 0, errRank
		}
		return r.N, nil
	}
	tests := []struct {
		name    string
		q       *gorm.DB
		toModel func(row) (int, error)
		is      func(error) bool
	}{
		{"query", table().Where("no_such_column = 1"), rank, func(err error) bool { return err != nil }},
		{"toModel", table(), refuseOne, func(err error) bool { return errors.Is(err, errRank) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := page.Find(tt.q, uuid.Nil, 5, tt.toModel)
			if got != nil || !tt.is(err) {
				t.Errorf("got %v, %v; want no page and the %s's error", got, err, tt.name)
			}
		})
	}
}
