// Package gdpr owns a tenant's right of access and right to erasure
// (issue 12, part 3).
//
// Export: POST /v1/tenant/exports queues a job (tenant_exports, migration
// 0022) that a leased background worker turns into a .tar.gz of one JSON
// Lines file per tenant table, found from the catalog (every table of
// schema public with a tenant_id column), read in one REPEATABLE READ
// transaction under the tenant's row-level security, plus manifest.json
// with rows and SHA-256 per file. Secret columns are left out (Redacted).
//
// Erasure: DELETE /admin/v1/tenants/{id}?confirm=<slug> removes every row
// of a suspended tenant from every tenant table (children before parents),
// its Casbin rules, its Redis keys and its tenants row, and writes a
// tenant_tombstones row, in one transaction and, for the rows, one call of
// tenant_erase (migration 0028); it answers a receipt whose SHA-256 the
// tombstone keeps.
//
// It needs the database pool (the worker role's, for the functions that
// only tenantd_worker executes), Redis, and a CredentialCache to drop the
// erased tenant's cached credentials. It publishes nothing.
package gdpr
