package tenant

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// KeyIssuer mints a tenant's first admin API key inside tx, the transaction
// that creates the tenant, and returns its secret.
type KeyIssuer interface {
	IssueAdminKey(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID) (secret string, err error)
}

// CredentialCache forgets cached credentials of a tenant that changed.
type CredentialCache interface {
	InvalidateTenant(ctx context.Context, tenantID uuid.UUID)
}

// Service runs the tenant lifecycle.
type Service struct {
	db      *db.DB
	keys    KeyIssuer
	cache   CredentialCache
	issuers IssuerChecker
}

// NewService returns a Service.
func NewService(d *db.DB, keys KeyIssuer, cache CredentialCache, issuers IssuerChecker) *Service {
	return &Service{db: d, keys: keys, cache: cache, issuers: issuers}
}

// OIDCIssuer returns the issuer the tenant registered, or "".
func (s *Service) OIDCIssuer(ctx context.Context, tenantID uuid.UUID) (string, error) {
	t, err := s.Self(ctx, tenantID)
	if err != nil || t.Settings.OIDC == nil {
		return "", err
	}
	return t.Settings.OIDC.Issuer, nil
}

// Create makes a tenant and its first admin key, in one transaction.
func (s *Service) Create(ctx context.Context, n NewTenant) (t Tenant, adminKey string, err error) {
	if err := n.Validate(); err != nil {
		return Tenant{}, "", err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Tenant{}, "", fmt.Errorf("new tenant id: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	t = Tenant{ID: id, Slug: n.Slug, Name: n.Name, Plan: n.Plan, Status: Active, Version: 1, CreatedAt: now, UpdatedAt: now}
	err = s.db.WithPlatform(ctx, func(tx *gorm.DB) error {
		if err := insertTenant(tx, t); err != nil {
			return err
		}
		// The key belongs to the new tenant: scope the rest of the
		// transaction to it, so the api_keys policy admits the insert.
		if err := db.SetTenant(tx, id); err != nil {
			return err
		}
		adminKey, err = s.keys.IssueAdminKey(ctx, tx, id)
		return err
	})
	if err != nil {
		return Tenant{}, "", fmt.Errorf("create tenant %s: %w", n.Slug, err)
	}
	return t, adminKey, nil
}

// Get returns any tenant, for operators.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (t Tenant, err error) {
	err = s.db.WithPlatform(ctx, func(tx *gorm.DB) error {
		t, err = getTenant(tx, id)
		return err
	})
	return t, err
}

// List returns up to limit+1 tenants after the given id, for operators.
func (s *Service) List(ctx context.Context, after uuid.UUID, limit int) (ts []Tenant, err error) {
	err = s.db.WithPlatform(ctx, func(tx *gorm.DB) error {
		ts, err = listTenants(tx, after, limit)
		return err
	})
	return ts, err
}

// Update applies an operator's change (name, plan, status). Cached
// credentials of the tenant are dropped, so a suspension or plan change
// applies to its next request.
func (s *Service) Update(ctx context.Context, id uuid.UUID, c Change) (t Tenant, err error) {
	if err := c.Validate(); err != nil {
		return Tenant{}, err
	}
	err = s.db.WithPlatform(ctx, func(tx *gorm.DB) error {
		cur, err := getTenant(tx.Clauses(lockForUpdate), id)
		if err != nil {
			return err
		}
		next := cur
		if c.Name != nil {
			next.Name = *c.Name
		}
		if c.Plan != nil {
			next.Plan = *c.Plan
		}
		if c.Status != nil {
			next.Status = *c.Status
		}
		t, err = updateTenant(tx, next, cur.Version)
		return err
	})
	if err != nil {
		return Tenant{}, err
	}
	s.cache.InvalidateTenant(ctx, id)
	return t, nil
}

// Plans lists the platform's plans.
func (s *Service) Plans(ctx context.Context) ([]Plan, error) {
	return listPlans(s.db.Unscoped(ctx))
}

// Self returns the caller's own tenant.
func (s *Service) Self(ctx context.Context, tenantID uuid.UUID) (t Tenant, err error) {
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		t, err = getTenant(tx, tenantID)
		return err
	})
	return t, err
}

// UpdateSelf applies a tenant admin's change to its own tenant. When
// ifVersion is not nil the tenant must still be at that version.
func (s *Service) UpdateSelf(ctx context.Context, tenantID uuid.UUID, c SelfChange, ifVersion *int) (t Tenant, err error) {
	if err := c.Validate(s.issuers); err != nil {
		return Tenant{}, err
	}
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		cur, err := getTenant(tx.Clauses(lockForUpdate), tenantID)
		if err != nil {
			return err
		}
		if ifVersion != nil && *ifVersion != cur.Version {
			return ErrVersionMismatch
		}
		next := cur
		if c.Name != nil {
			next.Name = *c.Name
		}
		if c.Settings != nil {
			next.Settings = *c.Settings
		}
		t, err = updateTenant(tx, next, cur.Version)
		return err
	})
	if err == nil {
		// The tenant's OIDC registration may have changed: signed-in
		// users are resolved again.
		s.cache.InvalidateTenant(ctx, tenantID)
	}
	return t, err
}
