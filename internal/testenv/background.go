package testenv

import (
	"context"
	"testing"
)

// Background runs run in a goroutine until the test ends: at cleanup run's
// context is cancelled and the cleanup waits for run to return, so that a
// worker's last flush or unsubscribe happens before the test's other
// cleanups (closing its pools) run.
func Background(t testing.TB, run func(ctx context.Context)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
