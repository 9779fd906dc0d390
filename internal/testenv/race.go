package testenv

import (
	"errors"
	"sync"
	"testing"
)

// Race calls fn(0) … fn(n-1) in n goroutines released at the same moment,
// as concurrent requests would arrive, and returns their errors by i.
func Race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// Succeeded counts the nil errors of a Race and fails the test for every
// error that is not refusal, the one way a call may lose the race.
func Succeeded(t testing.TB, errs []error, refusal error) int {
	t.Helper()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, refusal):
			t.Errorf("call %d: got %v, want nil or %v", i, err, refusal)
		}
	}
	return ok
}
