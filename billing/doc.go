// Package billing meters what every tenant uses, enforces what its plan
// allows, and turns usage into billing exports.
//
// What it owns: usage_counters (a tenant table under row-level security:
// one row per tenant, meter, currency, UTC hour and billing period),
// usage_flushes (platform data: the names of flushes already applied),
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
//   - Counter and Metering: request meters. Metering counts api_requests
//     for every authenticated /v1 request it sees, whatever the status,
//     except the 429s (and fail-closed 503s) this package itself answered.
//     Counter.Run pushes the counts to Redis, flushes them into
//     usage_counters, writes them straight to PostgreSQL while Redis is
//     down, and samples active_products; Counter.Flush empties everything
//     into PostgreSQL (call it at shutdown, after the HTTP server stopped).
//   - SubscribeMeters: business meters (orders_created, payment_volume) from
//     the event stream, written in the dispatcher's transaction, so each
//     event counts exactly once however often requests were retried.
//   - Limits: RateLimit (per tenant, by plan, GCRA in Redis through
//     go-redis/redis_rate) and Quota (hard monthly limits of plan_meters,
//     429 quota_exceeded).
//   - UsedInPeriod: a tenant's usage per meter in a billing period, for the
//     usage API and the admin report; the usage API and billing exports
//     (usage*.go, export*.go, http.go) build on the same counters.
//
// What it needs: internal/db (tenant transactions), Redis, internal/events
// (the dispatcher it subscribes to), internal/identity (the principal: its
// tenant and plan), internal/httpx and internal/fault (problem responses).
// It imports no other module: the payloads of order.placed and
// payment.succeeded that it reads are declared here.
//
// # Counting without loss or double counting
//
// The request path never waits for Redis to count. Metering adds to an
// in-process accumulator (sharded maps, a few tens of nanoseconds); every
// 100ms the accumulator is pushed to Redis, one Lua call per tenant that
// does HINCRBY on the hash usage:{tenant}:YYYYMMDDHH (field meter|currency)
// and records the push's sequence number under usage-seq:{tenant}:<replica>.
// The call applies only a sequence number higher than the recorded one, so
// pushing a batch again (a go-redis retry, or a retry after the connection
// broke before the reply) never counts it twice; a batch whose outcome is
// unknown is held and resolved that way once Redis answers. Every key of a
// tenant carries the tenant in braces, so on Redis Cluster they share a
// slot.
//
// The flusher (every 30s, on every replica at once if need be) renames each
// hash of a past hour to a uniquely named usage-flushing:{tenant}:hour:… key
// (RENAME is atomic: of two racing flushers one gets "no such key" and moves
// on), then, in one tenant transaction, inserts the flushing key's name
// into usage_flushes and, only if that row is new, adds the counts to
// usage_counters; after the commit it deletes the flushing key. A flusher
// that dies after the rename leaves the flushing key behind, and a later
// pass applies it; one that dies after the commit leaves a key whose name
// is already in usage_flushes, so the later pass only deletes it. (GETDEL or
// a read-and-delete script would lose the counts in that crash.)
// usage_flushes rows are pruned after 30 days; usage keys expire after 7.
//
// While Redis does not answer, requests are still served and counted: the
// accumulator is written straight to usage_counters every second, each
// batch under its own usage_flushes name so a retried commit applies once.
// When Redis answers again, counting goes back to it.
//
// What a crash can still lose: the counts of the last 100ms not yet pushed
// to Redis (in-process only), and a Redis that restarts without persistence
// loses what it held. Run Redis with AOF (appendfsync everysec) and stop
// replicas gracefully (Counter.Flush) for exact counts. A batch whose push
// outcome is still unknown at shutdown with Redis unreachable is written to
// PostgreSQL with a warning: it is counted twice only if Redis had applied
// it and later comes back with it.
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
// RateLimit keeps GCRA state in Redis (redis_rate, key
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
// Quota refuses a request with 429 quota_exceeded (naming the meter, its
// limit, the usage and when it resets; Retry-After until then) when a
// hard-limited meter of the tenant's plan is used up for the current
// period (UTC month): api_requests on every request, orders_created on
// POST /v1/orders (LimitOptions.QuotaRoutes). Usage is the counters of the
// period plus what Redis and this replica have not flushed yet, plus what
// this replica admitted since it read them. A replica trusts what it read
// for as long as the tenant, at its full rate, would need to use half of
// what is left (1 to 30 seconds), reading again in the background, or, at
// the one-second floor, before answering: other replicas' requests can
// overshoot a limit by at most what they admit in that time. Business
// meters reach the counters through the event dispatcher, a second or so
// after the request. Soft limits never refuse: the overage is billed.
// Plans and their meters are cached for 30 seconds; a tenant's plan comes
// from its principal, so a plan change applies to its next request.
package billing
