package testenv

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackground(t *testing.T) {
	t.Parallel()
	var started, returned atomic.Bool
	t.Run("worker", func(t *testing.T) {
		Background(t, func(ctx context.Context) {
			started.Store(true)
			<-ctx.Done()
			// A slow last step: the cleanup must wait for it.
			time.Sleep(50 * time.Millisecond)
			returned.Store(true)
		})
		Eventually(t, 2*time.Second, func() (bool, string) { return started.Load(), "the worker runs" })
		if returned.Load() {
			t.Error("the worker returned before the test ended")
		}
	})
	if !returned.Load() {
		t.Error("the test's cleanup finished before the worker returned")
	}
}
