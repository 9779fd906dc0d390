package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// Tenant is a tenant row written by NewTenant.
type Tenant struct {
	ID     uuid.UUID
	Slug   string
	Plan   string
	Status string
}

// TenantOption sets what NewTenant writes, or where.
type TenantOption func(*tenantSpec)

type tenantSpec struct {
	Tenant
	createdAt *time.Time
	owner     *db.DB
}

// WithPlan sets the tenant's plan (default free).
func WithPlan(plan string) TenantOption { return func(s *tenantSpec) { s.Plan = plan } }

// WithStatus sets the tenant's status (default active).
func WithStatus(status string) TenantOption { return func(s *tenantSpec) { s.Status = status } }

// WithSlug sets the tenant's slug (default t- and 12 random hex digits).
func WithSlug(slug string) TenantOption { return func(s *tenantSpec) { s.Slug = slug } }

// WithID sets the tenant's id (default a new UUIDv7).
func WithID(id uuid.UUID) TenantOption { return func(s *tenantSpec) { s.ID = id } }

// WithCreatedAt sets created_at and updated_at (default the database's
// now()).
func WithCreatedAt(at time.Time) TenantOption { return func(s *tenantSpec) { s.createdAt = &at } }

// InDB writes the tenant through owner, the owner role's pool on another
// database (default: the package's database).
func InDB(owner *db.DB) TenantOption { return func(s *tenantSpec) { s.owner = owner } }

// NewTenant inserts a tenant through the owner role's platform scope, as
// the operator API would, and returns it: an active tenant on the free plan
// with a random slug unless options say otherwise. Its name is "Tenant "
// and the slug.
func NewTenant(t testing.TB, opts ...TenantOption) Tenant {
	t.Helper()
	s := tenantSpec{Tenant: Tenant{Plan: "free", Status: "active"}}
	for _, opt := range opts {
		opt(&s)
	}
	if s.ID == uuid.Nil {
		s.ID = uuid.Must(uuid.NewV7())
	}
	if s.Slug == "" {
		s.Slug = "t-" + RandomHex(6)
	}
	if s.owner == nil {
		s.owner = Get(t).ownerPool(t)
	}
	err := s.owner.WithPlatform(context.Background(), func(tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO tenants (id, slug, name, plan, status, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, coalesce(?::timestamptz, now()), coalesce(?::timestamptz, now()))`,
			s.ID, s.Slug, "Tenant "+s.Slug, s.Plan, s.Status, s.createdAt, s.createdAt).Error
	})
	if err != nil {
		t.Fatalf("create tenant %s: %v", s.Slug, err)
	}
	return s.Tenant
}

// ownerPool is an owner-role pool on the package's database shared by the
// package's tests, closed after them.
func (e *Env) ownerPool(t testing.TB) *db.DB {
	t.Helper()
	e.ownerOnce.Do(func() {
		e.owner, e.ownerErr = db.Open(context.Background(), e.OwnerURL, db.Options{MaxConns: 4})
	})
	if e.ownerErr != nil {
		t.Fatalf("open owner database: %v", e.ownerErr)
	}
	return e.owner
}

// Query runs sql with args in a transaction of d bound to tenantID (under
// row-level security on a runtime-role pool; the owner's pool reads past
// it), scans its result into a T (a number, a row struct, a slice of
// either) and fails the test on an error.
func Query[T any](t testing.TB, d *db.DB, tenantID uuid.UUID, sql string, args ...any) T {
	t.Helper()
	var out T
	err := d.WithTenant(context.Background(), tenantID, func(tx *gorm.DB) error {
		return tx.Raw(sql, args...).Scan(&out).Error
	})
	if err != nil {
		t.Fatalf("query %q in tenant %s: %v", sql, tenantID, err)
	}
	return out
}

// Exec runs the statement sql with args in a transaction of d bound to
// tenantID, as Query does, and fails the test on an error.
func Exec(t testing.TB, d *db.DB, tenantID uuid.UUID, sql string, args ...any) {
	t.Helper()
	err := d.WithTenant(context.Background(), tenantID, func(tx *gorm.DB) error {
		return tx.Exec(sql, args...).Error
	})
	if err != nil {
		t.Fatalf("exec %q in tenant %s: %v", sql, tenantID, err)
	}
}
