// Package chaos is tenantd's fault suite (`make chaos`): two real `tenantd
// serve` replicas sharing one throw-away PostgreSQL and Redis take a
// bounded load of orders and payments for two tenants while faults are
// injected one after the other — a replica SIGKILLed and restarted,
// PostgreSQL restarted (also with a slow payment gateway), Redis stopped
// without persistence, SIGTERM under load, the event dispatcher's lease
// holder paused, row locks held on products. After each fault it checks
// the invariants that must survive any of them:
//
//   - every product's reserved stock is the sum of its held reservations,
//     and stock ≥ reserved ≥ 0; on-hand stock fell by exactly the stock
//     committed to completed orders;
//   - every order that was answered 201 exists and ends completed or
//     cancelled;
//   - no charge approved at the gateway without a completed order or a
//     refund;
//   - every event was handled once per subscriber, in effect: the order
//     meter equals the orders placed, no dead letters, every checkpoint
//     reaches the end of the log;
//   - metered requests equal answered requests (less, after a SIGKILL, at
//     most the counts of the killed replica's last second);
//   - no answer was a 500;
//   - `tenantd audit verify` passes.
//
// The tests carry the build tag chaos, so `make test` does not run them;
// `make chaos` does, and prints "N passed, N failed" over the checks.
package chaos
