package auth

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
)

// TenantIssuers tells which OIDC issuer a tenant registered ("" for none).
type TenantIssuers interface {
	OIDCIssuer(ctx context.Context, tenantID uuid.UUID) (string, error)
}

// WithTenantIssuers lets the service add members by subject at the
// tenant's issuer.
func WithTenantIssuers(t TenantIssuers) Option { return func(s *Service) { s.tenantIssuers = t } }

// AddMember invites a member by email or adds one by subject at the
// tenant's issuer. The roles must exist in the tenant and grant nothing the
// actor lacks.
func (s *Service) AddMember(ctx context.Context, actor identity.Principal, n NewMember) (Member, error) {
	if err := n.Validate(); err != nil {
		return Member{}, err
	}
	if err := s.checkGrant(ctx, actor, "adding a member", n.Roles); err != nil {
		return Member{}, err
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	m := Member{ID: newID(), TenantID: actor.TenantID, Email: n.Email, Roles: n.Roles, Status: MemberInvited,
		CreatedBy: actor.Actor(), CreatedAt: now, UpdatedAt: now}
	if n.Subject != "" {
		if s.tenantIssuers == nil {
			return Member{}, ErrNoIssuer
		}
		issuer, err := s.tenantIssuers.OIDCIssuer(ctx, actor.TenantID)
		if err != nil {
			return Member{}, err
		}
		if issuer == "" {
			return Member{}, ErrNoIssuer
		}
		m.Issuer, m.Subject, m.Status = issuer, n.Subject, MemberActive
	}
	err := s.db.WithTenant(ctx, actor.TenantID, func(tx *gorm.DB) error {
		if err := insertMember(tx, m); err != nil {
			return err
		}
		return audit.Record(ctx, tx, actor.TenantID, audit.Entry{Action: "member.added", Resource: "member:" + m.ID.String(),
			Summary: map[string]any{"after": map[string]any{"status": m.Status, "roles": m.Roles, "subject": m.Subject, "email_domain": emailDomain(m.Email)}}})
	})
	if err != nil {
		return Member{}, err
	}
	return m, nil
}

// ListMembers returns up to limit+1 members of the tenant after the id.
func (s *Service) ListMembers(ctx context.Context, tenantID, after uuid.UUID, limit int) (ms []Member, err error) {
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		ms, err = listMembers(tx, after, limit)
		return err
	})
	return ms, err
}

// MemberRoles returns the role names held by the tenant's members and
// pending invitations: what a new issuer or audience hands to whoever its
// tokens name.
func (s *Service) MemberRoles(ctx context.Context, tenantID uuid.UUID) (roles []string, err error) {
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		roles, err = memberRoles(tx)
		return err
	})
	return roles, err
}

// SetMemberRoles replaces a member's roles; it applies to the member's next
// request. The actor must hold every permission of the member's roles, old
// and new, and the tenant's last admin keeps the admin role
// (ErrLastAdmin).
func (s *Service) SetMemberRoles(ctx context.Context, actor identity.Principal, id uuid.UUID, roles []string) (m Member, err error) {
	var f fault.Fields
	validateRoleNames(&f, roles)
	if err := f.Err(); err != nil {
		return Member{}, err
	}
	roles = dedupe(roles)
	if err := s.checkGrant(ctx, actor, "giving a member roles", roles); err != nil {
		return Member{}, err
	}
	err = s.actOn(ctx, actor.TenantID, &actor, memberTarget(id), "changing a member's roles",
		func(credential) bool { return !slices.Contains(roles, adminRole) },
		func(tx *gorm.DB, before credential) error {
			if m, err = setMemberRoles(tx, id, roles); err != nil {
				return err
			}
			return audit.Record(ctx, tx, actor.TenantID, audit.Entry{Action: "member.roles_changed", Resource: "member:" + id.String(),
				Summary: map[string]any{"before": map[string]any{"roles": before.roles}, "after": map[string]any{"roles": m.Roles}}})
		})
	if err == nil {
		s.InvalidateTenant(ctx, actor.TenantID)
	}
	return m, err
}

// RemoveMember deletes a member; the user's next request is refused. The
// actor must hold every permission of the member's roles, and the
// tenant's last admin is never removed (ErrLastAdmin).
func (s *Service) RemoveMember(ctx context.Context, actor identity.Principal, id uuid.UUID) error {
	err := s.actOn(ctx, actor.TenantID, &actor, memberTarget(id), "removing a member",
		func(credential) bool { return true },
		func(tx *gorm.DB, _ credential) error {
			before, err := findMember(tx, "id = ?", id)
			if err != nil {
				return err
			}
			if err := deleteMember(tx, id); err != nil {
				return err
			}
			return audit.Record(ctx, tx, actor.TenantID, audit.Entry{Action: "member.removed", Resource: "member:" + id.String(),
				Summary: map[string]any{"before": map[string]any{"status": before.Status, "roles": before.Roles, "subject": before.Subject, "email_domain": emailDomain(before.Email)}}})
		})
	if err == nil {
		s.InvalidateTenant(ctx, actor.TenantID)
	}
	return err
}
