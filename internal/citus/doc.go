//go:build citus

// Package citus holds the tests that prove tenantd on a real Citus cluster
// (issue 14): tenant isolation enforced on the workers themselves, a tenant
// isolated to a shard of its own and moved to another worker while the
// service runs, and benchmarks of the tenant binding and of router reads
// against plain PostgreSQL in the same run.
//
// Every file carries the build tag citus, so `make test` (go test ./...)
// leaves the package out; `make test-citus` starts a throw-away cluster
// (tools/citus/cluster.sh) and runs it with -tags citus. Run without a
// cluster, the package fails at set-up (testenv.RequireCitus): it never
// skips.
package citus
