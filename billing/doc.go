// Package billing meters what every tenant uses, enforces what its plan
// allows, and turns usage into billing exports.
//
// What it owns: usage_counters (a tenant table under row-level security:
// one row per tenant, meter, currency, UTC hour and billing period),
// usage_flushes (platform data: each replica's last applied flush, and the
// names of Redis hashes drained from earlier releases),
// billing_periods (closed periods), billing_lines and billing_exports, and
// the plan catalogue's meters (plan_meters). Cross-tenant reads go through
// SECURITY DEFINER functions only: billing_active_products (0008) and the
// export and report functions (0009).
//
// What it publishes:
//
//   - Meters: MeterAPIRequests, MeterOrdersCreated, MeterPaymentVolume
//     (minor units, per currency) and MeterActiveProducts (a gauge: its
//     usage in a period is its highest hourly value; the others are summed).
//   - Counter: request meters. Counter.CountRequest counts api_requests;
//     middleware.Metering calls it for every authenticated /v1 request,
//     whatever the status, except the ones the rate limit or a quota
//     refused (429s, and fail-closed 503s).
//     Counter.Run writes the counts into usage_counters every second and
//     samples active_products; Counter.Flush writes what is left (call it
//     at shutdown, after the HTTP server stopped; it needs no Redis).
//   - SubscribeMeters: business meters (orders_created, payment_volume) from
//     the event stream, written in the dispatcher's transaction, so each
//     event counts exactly once however often requests were retried.
//   - Limits: plain decisions for the request path's middleware (it writes
//     no HTTP itself): AllowRequest (rate limits per tenant, by plan, GCRA
//     in Redis through go-redis/redis_rate; refusals ErrRateLimited, a
//     *RateLimitError, and ErrRateLimitUnavailable) and AdmitRequest (hard
//     monthly limits of plan_meters; refusal ErrQuotaExceeded, a
//     *QuotaError). internal/httpx answers them (429 rate_limited, 503,
//     429 quota_exceeded).
//   - UsedInPeriod: a tenant's usage per meter in a billing period, for the
//     usage API and the admin report; the usage API and billing exports
//     (usage*.go, export*.go, http.go) build on the same counters.
//
// What it needs: internal/db (tenant transactions), Redis (rate limits),
// internal/events (the dispatcher it subscribes to), internal/identity (the
// principal: its tenant and plan), internal/httpx and internal/fault
// (problem responses of its handlers; fault codes of its refusals).
// It imports no other module: the payloads of order.placed and
// payment.succeeded that it reads are declared here.
//
// # Counting without loss or double counting
//
// The request path never waits to count. CountRequest adds to an in-process
// accumulator (sharded maps, a few tens of nanoseconds). Every second the
// Counter takes the accumulator as a flush under the next sequence number
// of this replica (a random id per process) and writes it straight into
// usage_counters in one transaction (at most 200 tenants each; more make
// more flushes, numbered in order). The same transaction raises the
// replica's applied_seq in usage_flushes (flush_key 'replica:<id>') to the
// flush's number, and adds nothing if the number is there already. A flush
// stays in memory until its transaction is known to have committed; one
// that failed, or whose COMMIT reply was lost, is written again under the
// same number before any later count is taken, so a retry whose first
// attempt committed finds its number applied and adds nothing: each count
// is applied exactly once. While PostgreSQL is away, new counts merge in
// the accumulator, so memory stays bounded. Each tenant's rows are written
// after setting that tenant (as db.SetTenant does), under its row-level
// security, all tenants of a flush in one pipelined pgx batch; tenants are
// written in id order by every replica, so flushes of the same rows queue
// instead of deadlocking. A tenant deleted since it was counted is skipped.
//
// Redis holds no usage: a Redis that restarts without persistence, or is
// down, loses no count (rate limits fail open or closed meanwhile). Earlier
// releases pushed counts to Redis hashes; Run drains any such keys an older
// replica left (at start and every 10 minutes, legacy.go), by renaming
// each to a uniquely named key and applying that name once.
//
// What a crash can lose: the counts this process took since its last
// committed flush, about the last second of its requests (a SIGKILL, an
// out-of-memory kill, a lost machine). A graceful stop (Counter.Flush,
// which retries while PostgreSQL fails, until its context ends) loses
// none. usage_counters, and so GET /v1/usage, the admin report and the
// exports, lag the requests by about a second.
//
// A count belongs to the billing period of its hour ("YYYY-MM"), unless
// that period is closed (a row in billing_periods); then it goes to the
// first period after the latest closed one, as an adjustment. Every writer
// of usage_counters first takes ROW EXCLUSIVE on the table and then reads
// billing_periods, and closing a period (billing_close_period) takes SHARE
// on it, so no count lands in a period after it was closed.
//
// active_products is sampled every minute (billing_active_products, one
// grouped count across tenants) and written as the maximum of the hour, so a
// peak shorter than a minute can be missed; sampling, not product events,
// because a gauge needs a value in every period even when nothing changes.
//
// # Rate limits and quotas
//
// AllowRequest keeps GCRA state in Redis (redis_rate, key
// rate:rl:{tenant}:plan; with the plan in it, a plan change starts afresh)
// with the plan's rate_per_second and burst. A replica takes tokens in small
// leases (AllowAtMost of rate/10, at least 1, held at most a second), so a
// tenant within its limit costs one Redis call per lease, not per request,
// and it remembers a refusal until its Retry-After, so a tenant hammering
// past its limit costs none: one noisy tenant cannot slow another. Every
// response carries RateLimit-Limit (the burst), RateLimit-Remaining and
// RateLimit-Reset (seconds until the bucket is full); a refusal is 429
// rate_limited with Retry-After. If Redis fails, requests pass
// (RATE_LIMIT_FAIL=open, the default) or get 503 with Retry-After
// (closed), with a warning log (at most one per 10s) and
// LimitOptions.OnRedisError per request; after a failure Redis is tried
// again once a second.
//
// AdmitRequest refuses a request with 429 quota_exceeded (naming the meter, its
// limit, the usage and when it resets; Retry-After until then) when a
// hard-limited meter of the tenant's plan is used up for the current
// period (UTC month): api_requests on every request, orders_created on
// POST /v1/orders (LimitOptions.QuotaRoutes). Usage is the counters of the
// period plus what this replica has not flushed yet (read so that a flush
// committing meanwhile is never counted twice), plus what this replica
// admitted since it read them. A replica trusts what it read
// for as long as the tenant, at its full rate, would need to use half of
// what is left (1 to 30 seconds), reading again in the background, or, at
// the one-second floor, before answering: other replicas' requests can
// overshoot a limit by at most what they admit in that time. Business
// meters reach the counters through the event dispatcher, a second or so
// after the request. Soft limits never refuse: the overage is billed.
// Plans and their meters are cached for 30 seconds; a tenant's plan comes
// from its principal, so a plan change applies to its next request.
package billing
