// Package wait holds the ways background work waits on a clock: a pause
// that ends early when the context ends (Sleep), or also when new work is
// announced (SleepOrWake), and a periodic call until the context ends
// (Every).
package wait

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends; it reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool { return SleepOrWake(ctx, d, nil) }

// SleepOrWake waits d, or until wake receives, or until ctx ends; it
// reports whether ctx is still live. A polling worker pauses with it
// between rounds, woken early when new work is announced on wake.
func SleepOrWake(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
		return true
	case <-t.C:
		return true
	}
}

// Every calls fn every d until ctx ends; the first call is d from now. fn
// is not called once ctx has ended, even when a tick is pending. To stop
// from inside fn, cancel ctx.
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ctx.Err() != nil {
				return
			}
			fn()
		}
	}
}
