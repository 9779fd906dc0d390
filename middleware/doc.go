// Package middleware is tenantd's gin middleware chain, every step of it:
// request id, audit origin, request metrics, panic recovery, access
// logging, body limit, tenant naming, authentication, tenant matching and
// status, the audit entry, metering, rate limit, quota, route
// authorization (and the operator's), idempotency and the audit binding.
// internal/app/chain.go lists them in order.
//
// The modules behind the steps keep their logic and write no HTTP: each
// step depends only on the small interface it consumes, declared here
// (RateLimiter, QuotaChecker, RequestCounter, Auditor, IdempotencyKeys,
// …), and answers refusals through internal/httpx, the one place that maps
// errors to problem+json.
package middleware
