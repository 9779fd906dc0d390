package wait_test

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tenantd/tenantd/internal/wait"
)

// Event times of the tables below: never, or already before the call; any
// other value is that long after the call starts.
const (
	never  time.Duration = 0
	before time.Duration = -1
)

// at runs fn at the event time when (never: not at all) and returns what
// stops it.
func at(when time.Duration, fn func()) (stop func() bool) {
	switch when {
	case never:
		return func() bool { return false }
	case before:
		fn()
		return func() bool { return false }
	}
	return time.AfterFunc(when, fn).Stop
}

// TestSleepOrWake: the pause ends at the first of its timer, a wake and the
// end of the context, and reports whether the context is still live. It
// runs in a synctest bubble: the clock is fake, so each case lasts exactly
// as long as the pause should (no real sleeping), and a goroutine left
// behind fails the test.
func TestSleepOrWake(t *testing.T) {
	const d = time.Second
	tests := []struct {
		name             string
		sleep            bool // Sleep, without a wake channel
		wakeAt, cancelAt time.Duration
		want             bool
		wantElapsed      time.Duration
	}{
		{"timer", false, never, never, true, d},
		{"wake before the timer", false, 100 * time.Millisecond, never, true, 100 * time.Millisecond},
		{"woken already", false, before, never, true, 0},
		{"wake after the timer", false, 2 * d, never, true, d},
		{"cancelled before the timer", false, never, 100 * time.Millisecond, false, 100 * time.Millisecond},
		{"cancelled before the wake", false, 200 * time.Millisecond, 100 * time.Millisecond, false, 100 * time.Millisecond},
		{"cancelled already", false, never, before, false, 0},
		{"Sleep: timer", true, never, never, true, d},
		{"Sleep: cancelled", true, never, 100 * time.Millisecond, false, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				wake := make(chan struct{}, 1)
				defer at(tt.wakeAt, func() { wake <- struct{}{} })()
				defer at(tt.cancelAt, cancel)()
				start := time.Now()
				var live bool
				if tt.sleep {
					live = wait.Sleep(ctx, d)
				} else {
					live = wait.SleepOrWake(ctx, d, wake)
				}
				if elapsed := time.Since(start); live != tt.want || elapsed != tt.wantElapsed {
					t.Errorf("got %t after %v, want %t after %v", live, elapsed, tt.want, tt.wantElapsed)
				}
			})
		})
	}
}

// TestEvery: fn runs every d from d on until the context ends; Every
// returns then (or once the call running then returns), and never calls fn
// after the end, not even for a tick that came while fn ran. In a synctest bubble, as TestSleepOrWake: an Every that does not
// return leaves its bubble deadlocked, which fails the test. select picks
// at random among ready cases, so each case runs 32 times: a pending tick
// that wins over the cancellation shows.
func TestEvery(t *testing.T) {
	const d = 100 * time.Millisecond
	tests := []struct {
		name         string
		cancelAt     time.Duration
		cancelInCall int           // cancel from inside this call (0: no call cancels)
		callTakes    time.Duration // how long each call of fn blocks
		wantCalls    []time.Duration
		wantReturn   time.Duration
	}{
		{"until cancelled", 350 * time.Millisecond, 0, 0, []time.Duration{d, 2 * d, 3 * d}, 350 * time.Millisecond},
		{"cancelled before the first tick", 50 * time.Millisecond, 0, 0, nil, 50 * time.Millisecond},
		{"cancelled already", before, 0, 0, nil, 0},
		{"cancelled from inside fn", never, 2, 0, []time.Duration{d, 2 * d}, 2 * d},
		{"tick pending when cancelled", 150 * time.Millisecond, 0, 150 * time.Millisecond, []time.Duration{d}, 250 * time.Millisecond},
		{"cancelled from inside fn, tick pending", never, 1, 250 * time.Millisecond, []time.Duration{d}, 350 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 32 {
				synctest.Test(t, func(t *testing.T) {
					calls, returned := every(t, d, tt.cancelAt, tt.cancelInCall, tt.callTakes)
					if !slices.Equal(calls, tt.wantCalls) || returned != tt.wantReturn {
						t.Fatalf("got calls at %v and the return at %v, want calls at %v and the return at %v",
							calls, returned, tt.wantCalls, tt.wantReturn)
					}
				})
			}
		})
	}
}

// every runs Every(d) in a goroutine of its own, cancelled at cancelAt or
// from inside call cancelInCall, each call blocking callTakes, and returns
// when each call came and when Every returned.
func every(t *testing.T, d, cancelAt time.Duration, cancelInCall int, callTakes time.Duration) (calls []time.Duration, returned time.Duration) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	defer at(cancelAt, cancel)()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait.Every(ctx, d, func() {
			calls = append(calls, time.Since(start))
			if len(calls) == cancelInCall {
				cancel()
			}
			time.Sleep(callTakes)
		})
	}()
	<-done
	return calls, time.Since(start)
}
