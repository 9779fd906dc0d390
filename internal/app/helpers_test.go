package app_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// hammer runs workers goroutines until d has passed, each calling op over
// and over with a random source of its own, and returns when all have
// stopped.
func hammer(t *testing.T, d time.Duration, workers int, op func(r *rand.Rand)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				op(r)
			}
		})
	}
	wg.Wait()
}
