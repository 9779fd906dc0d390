package testenv

import (
	"testing"
	"time"
)

// pollEvery is how often Eventually asks again.
const pollEvery = 10 * time.Millisecond

// Eventually asks cond every few milliseconds until it holds, and fails the
// test with cond's last reason when it has not held within timeout. It
// returns how long cond took to hold. Call it from the test's goroutine.
func Eventually(t testing.TB, timeout time.Duration, cond func() (ok bool, reason string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, reason := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("not within %v: %s", timeout, reason)
		}
		time.Sleep(pollEvery)
	}
}
