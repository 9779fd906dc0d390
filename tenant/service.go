package tenant

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
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

// Grants answers what sign-in settings hand out: nobody grants what they
// do not hold (auth.Service).
type Grants interface {
	// MissingPermissions returns the permissions the roles grant in the
	// actor's tenant that the actor lacks; unknown roles grant nothing.
	MissingPermissions(ctx context.Context, actor identity.Principal, roles []string) ([]string, error)
	// RoleExists reports whether role is built in or the tenant's own.
	RoleExists(ctx context.Context, tenantID uuid.UUID, role string) (bool, error)
	// MemberRoles lists the roles of the tenant's members and pending
	// invitations.
	MemberRoles(ctx context.Context, tenantID uuid.UUID) ([]string, error)
}

// Service runs the tenant lifecycle.
type Service struct {
	db      *db.DB
	keys    KeyIssuer
	cache   CredentialCache
	issuers IssuerChecker
	grants  Grants
}

// NewService returns a Service.
func NewService(d *db.DB, keys KeyIssuer, cache CredentialCache, issuers IssuerChecker, grants Grants) *Service {
	return &Service{db: d, keys: keys, cache: cache, issuers: issuers, grants: grants}
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
		if c.BillingCustomerID != nil {
			next.BillingCustomerID = nil
			if id := *c.BillingCustomerID; id != "" {
				next.BillingCustomerID = &id
			}
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

// selfAttempts bounds how often UpdateSelf starts over when the tenant
// changed between its read and its write (without If-Match).
const selfAttempts = 3

// UpdateSelf applies a member's or key's change to its own tenant. When
// ifVersion is not nil the tenant must still be at that version. Changing
// sign-in settings that hand out roles needs every permission of those
// roles (checkSignIn). Registering an issuer and audience another tenant
// has registered is a conflict.
func (s *Service) UpdateSelf(ctx context.Context, actor identity.Principal, c SelfChange, ifVersion *int) (t Tenant, err error) {
	if err := c.Validate(); err != nil {
		return Tenant{}, err
	}
	for attempt := 1; ; attempt++ {
		cur, err := s.Self(ctx, actor.TenantID)
		if err != nil {
			return Tenant{}, err
		}
		if ifVersion != nil && *ifVersion != cur.Version {
			return Tenant{}, ErrVersionMismatch
		}
		next := cur
		if c.Name != nil {
			next.Name = *c.Name
		}
		if c.Settings != nil {
			if next.Settings, err = c.Settings.Apply(cur.Settings); err != nil {
				return Tenant{}, err
			}
			if err := ValidateSettings(next.Settings, s.issuers); err != nil {
				return Tenant{}, err
			}
		}
		if err := s.checkSignIn(ctx, actor, cur.Settings.OIDC, next.Settings.OIDC); err != nil {
			return Tenant{}, err
		}
		// The check read the tenant as of cur.Version: the write happens
		// only if it is still so.
		err = s.db.WithTenant(ctx, actor.TenantID, func(tx *gorm.DB) error {
			t, err = updateTenant(tx, next, cur.Version)
			return err
		})
		if errors.Is(err, ErrVersionMismatch) && ifVersion == nil && attempt < selfAttempts {
			continue
		}
		if err != nil {
			return Tenant{}, err
		}
		// The tenant's OIDC registration may have changed: signed-in
		// users are resolved again.
		s.cache.InvalidateTenant(ctx, actor.TenantID)
		return t, nil
	}
}

// checkSignIn refuses a change of the OIDC settings from before to after
// that hands out a role with a permission the actor lacks: nobody grants
// what they do not hold.
//
//   - roles_claim lets the identity provider name any role: setting or
//     changing it needs every permission (those of admin).
//   - jit_email_domains with jit_default_role make anyone with a verified
//     email of those domains a member with that role: changing either
//     needs the role's permissions, and the role must exist.
//   - A new issuer or audience lets other tokens in: they sign in as the
//     tenant's members by subject, claim pending invitations by email, and
//     bring the claim and JIT roles above. Changing either needs the
//     permissions of every role a member or invitation holds, and of the
//     claim and JIT roles the settings keep.
//
// Removing sign-in, or changing nothing that hands out roles, needs
// nothing beyond tenant:write.
func (s *Service) checkSignIn(ctx context.Context, actor identity.Principal, before, after *OIDC) error {
	if after == nil {
		return nil
	}
	registration := before == nil || before.Issuer != after.Issuer || before.Audience != after.Audience
	type grant struct {
		setting, hands string
		roles          []string
	}
	var grants []grant
	if after.RolesClaim != "" && (registration || before.RolesClaim != after.RolesClaim) {
		grants = append(grants, grant{"settings.oidc.roles_claim", "can name any role", []string{adminRole}})
	}
	jit := len(after.JITEmailDomains) > 0 && after.JITDefaultRole != ""
	if jit && (registration || before.JITDefaultRole != after.JITDefaultRole || !sameDomains(before.JITEmailDomains, after.JITEmailDomains)) {
		ok, err := s.grants.RoleExists(ctx, actor.TenantID, after.JITDefaultRole)
		if err != nil {
			return err
		}
		if !ok {
			return fault.Invalid(fault.Field("settings.oidc.jit_default_role", "must name a role of the tenant"))
		}
		grants = append(grants, grant{"settings.oidc.jit_default_role", "hands out role " + after.JITDefaultRole, []string{after.JITDefaultRole}})
	}
	if registration {
		roles, err := s.grants.MemberRoles(ctx, actor.TenantID)
		if err != nil {
			return err
		}
		grants = append(grants, grant{"settings.oidc.issuer and audience", "sign in as the tenant's members and invitations", roles})
	}
	for _, g := range grants {
		missing, err := s.grants.MissingPermissions(ctx, actor, g.roles)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return fault.New(fault.Forbidden, fmt.Sprintf(
				"changing %s (which %s) needs every permission of the roles it hands out; you lack %s",
				g.setting, g.hands, strings.Join(missing, ", ")))
		}
	}
	return nil
}

// adminRole is the built-in role with every permission: what a roles
// claim, able to name any role, needs.
const adminRole = "admin"

// sameDomains reports whether a and b list the same domains.
func sameDomains(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
