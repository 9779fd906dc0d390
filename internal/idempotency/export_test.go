package idempotency

import "time"

// SetLease changes s's lease and how often a running request renews it, so
// tests can watch a renewal happen.
func SetLease(s *Store, lease, renewEvery time.Duration) {
	s.lease = lease
	s.renewEvery = renewEvery
}
