package apptest_test

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/apptest"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as testing's does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs f with a fatalRecorder on its own goroutine and returns
// what f failed with, or "".
func fatalOf(t *testing.T, f func(tb testing.TB)) string {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

// sortedIDs returns n ids in ascending order.
func sortedIDs(n int) []uuid.UUID {
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.New()
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	return ids
}

// keyset answers as tenantd's stores do: up to limit+1 ids after the
// cursor.
func keyset(ids []uuid.UUID, limit int) func(after uuid.UUID) ([]uuid.UUID, error) {
	return func(after uuid.UUID) ([]uuid.UUID, error) {
		i := 0
		if after != uuid.Nil {
			i = slices.Index(ids, after) + 1
		}
		return ids[i:min(len(ids), i+limit+1)], nil
	}
}

func self(id uuid.UUID) uuid.UUID { return id }

func TestPages(t *testing.T) {
	for _, tt := range []struct {
		items, limit int
		wantSizes    []int
	}{
		{7, 3, []int{3, 3, 1}},
		{6, 3, []int{3, 3}},
		{2, 3, []int{2}},
		{0, 3, []int{0}},
	} {
		t.Run(fmt.Sprintf("%d by %d", tt.items, tt.limit), func(t *testing.T) {
			ids := sortedIDs(tt.items)
			got, sizes := apptest.Pages(t, tt.limit, keyset(ids, tt.limit), self)
			if !slices.Equal(got, ids) || !slices.Equal(sizes, tt.wantSizes) {
				t.Errorf("got %v in pages %v, want %v in %v", got, sizes, ids, tt.wantSizes)
			}
		})
	}
}

func TestPagesFails(t *testing.T) {
	ids := sortedIDs(5)
	broken := func(after uuid.UUID) ([]uuid.UUID, error) {
		if after != uuid.Nil {
			return nil, errors.New("connection lost")
		}
		return keyset(ids, 2)(after)
	}
	if got, want := fatalOf(t, func(tb testing.TB) { apptest.Pages(tb, 2, broken, self) }), "list page 2: connection lost"; got != want {
		t.Errorf("on an error: got failure %q, want %q", got, want)
	}
	endless := func(uuid.UUID) ([]uuid.UUID, error) { return ids[:3], nil }
	if got, want := fatalOf(t, func(tb testing.TB) { apptest.Pages(tb, 2, endless, self) }), "the list has not ended after 100 pages of 2"; got != want {
		t.Errorf("on a list without end: got failure %q, want %q", got, want)
	}
}

func TestLoop(t *testing.T) {
	const workers = 4
	var mu sync.Mutex
	seen := make([][]int, workers)
	var calls atomic.Int64
	busy, ended := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stop := apptest.Loop(workers, func(w, i int) bool {
		mu.Lock()
		seen[w] = append(seen[w], i)
		mu.Unlock()
		if calls.Add(1) >= 100 {
			once.Do(func() { close(busy) })
		}
		if w == 0 && i == 2 {
			close(ended)
			return false // worker 0 ends itself after its third step
		}
		return true
	})
	<-busy
	<-ended
	stop()
	after := calls.Load()
	stop() // again: only waits
	if calls.Load() != after {
		t.Errorf("got %d steps after stop returned, want none", calls.Load()-after)
	}
	if !slices.Equal(seen[0], []int{0, 1, 2}) {
		t.Errorf("worker 0 got steps %v, want [0 1 2]", seen[0])
	}
	for w, steps := range seen {
		for i, got := range steps {
			if got != i {
				t.Fatalf("worker %d got step %d as its step %d, want steps in order", w, got, i)
			}
		}
	}
}
