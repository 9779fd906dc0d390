package gdpr

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
)

// CredentialCache forgets the cached credentials of a tenant, on every
// replica (auth.Service).
type CredentialCache interface {
	InvalidateTenant(ctx context.Context, tenantID uuid.UUID)
}

// Receipt is what an erasure removed. Its JSON encoding (encoding/json:
// struct fields in this order, map keys sorted) is the response body, and
// its SHA-256 is kept in the tenant's tombstone.
type Receipt struct {
	TenantID uuid.UUID `json:"tenant_id"`
	// Tables is the rows deleted per table: every tenant table of the
	// catalog (0 included), casbin_rule (the tenant's policy rules) and
	// tenants (1).
	Tables map[string]int64 `json:"tables"`
	// RedisKeys is how many Redis keys of the tenant were deleted.
	RedisKeys int64 `json:"redis_keys"`
	// AuditHead is the last sealed link of the tenant's audit chain before
	// erasure (seq 0 and the genesis hash for a chain with none).
	AuditHead AuditHead `json:"audit_head"`
	ErasedAt  time.Time `json:"erased_at"`
}

// AuditHead is one link of an audit chain: its seq and hash (hex).
type AuditHead struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// Tombstone is what remains of an erased tenant: no personal data.
type Tombstone struct {
	ID            uuid.UUID
	Slug          string
	ErasedAt      time.Time
	ReceiptSHA256 string
}

// Errors of erasure and export.
var (
	// ErrNotFound: no such tenant, or no such export of the caller's
	// tenant.
	ErrNotFound = fault.New(fault.NotFound, "no such resource")
	// ErrNotSuspended: only a suspended tenant is erased.
	ErrNotSuspended = fault.New(fault.Conflict,
		"only a suspended tenant can be erased: suspend it first (PATCH /admin/v1/tenants/{id} {\"status\":\"suspended\"})")
	// ErrConfirm: confirm must repeat the tenant's slug.
	ErrConfirm = fault.Invalid(fault.Field("confirm", "must be the tenant's slug"))
	// ErrNotReady: the export has no archive (yet, or it failed).
	ErrNotReady = fault.New(fault.NotFound, "the export has no archive: it is not finished, or it failed")
)
