package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
)

// OIDCSettings is a tenant's identity provider registration, as stored in
// the tenant's settings under "oidc".
type OIDCSettings struct {
	Issuer     string `json:"issuer"`
	Audience   string `json:"audience"`
	RolesClaim string `json:"roles_claim,omitempty"`
	// JITEmailDomains lets users with a verified email in these domains
	// join on first sign-in with JITDefaultRole.
	JITEmailDomains []string `json:"jit_email_domains,omitempty"`
	JITDefaultRole  string   `json:"jit_default_role,omitempty"`
}

// registration is a tenant that registered a token's issuer.
type registration struct {
	TenantID uuid.UUID
	Slug     string
	Status   string
	Plan     string
	OIDC     OIDCSettings
}

var errAmbiguousTenant = fault.New(fault.Unauthenticated,
	"several tenants accept tokens of this issuer and audience: name the tenant with the X-Tenant header")

// signIn authenticates an OIDC ID token or JWT access token: it finds the
// tenants that registered the token's issuer (never running discovery for
// an issuer no tenant registered), verifies the token, picks the tenant by
// audience (and X-Tenant when several match), and resolves the member.
func (s *Service) signIn(ctx context.Context, raw string) (identity.Principal, error) {
	iss, _ := peekIssuer(raw)
	regs, err := s.tenantsOf(ctx, iss)
	if err != nil {
		return identity.Principal{}, err
	}
	if len(regs) == 0 {
		return identity.Principal{}, ErrIssuerNotRegistered
	}
	tok, err := s.issuers.verify(ctx, iss, raw)
	if err != nil {
		return identity.Principal{}, err
	}
	reg, err := chooseTenant(regs, tok.Audience, identity.NamedTenant(ctx))
	if err != nil {
		return identity.Principal{}, err
	}
	m, err := s.member(ctx, reg, tok)
	if err != nil {
		return identity.Principal{}, err
	}
	roles := slices.Clone(m.Roles)
	if reg.OIDC.RolesClaim != "" {
		roles = dedupe(append(roles, claimRoles(tok.Claims[reg.OIDC.RolesClaim])...))
	}
	return identity.Principal{
		Kind: identity.KindUser, TenantID: reg.TenantID, TenantSlug: reg.Slug, TenantStatus: reg.Status,
		Plan: reg.Plan, Subject: tok.Subject, Roles: roles, MemberID: m.ID,
	}, nil
}

// memberKey identifies a signed-in user in a tenant.
type memberKey struct {
	tenant          uuid.UUID
	issuer, subject string
}

// tenantsOf returns the tenants that registered issuer, cached.
func (s *Service) tenantsOf(ctx context.Context, issuer string) ([]registration, error) {
	if s.registrations != nil {
		if regs, ok := s.registrations.Get(issuer); ok {
			return regs, nil
		}
	}
	regs, err := s.loadRegistrations(ctx, issuer)
	if err == nil && s.registrations != nil {
		s.registrations.Add(issuer, regs)
	}
	return regs, err
}

func (s *Service) loadRegistrations(ctx context.Context, issuer string) ([]registration, error) {
	rows, err := lookupRegistrations(s.db.Unscoped(ctx), issuer)
	if err != nil {
		return nil, err
	}
	out := make([]registration, 0, len(rows))
	for _, r := range rows {
		reg := registration{TenantID: r.TenantID, Slug: r.TenantSlug, Status: r.TenantStatus, Plan: r.TenantPlan}
		if err := json.Unmarshal(r.OIDC, &reg.OIDC); err != nil {
			return nil, fmt.Errorf("decode oidc settings of tenant %s: %w", r.TenantID, err)
		}
		if reg.OIDC.Audience != "" {
			out = append(out, reg)
		}
	}
	return out, nil
}

// chooseTenant picks the registration whose audience the token carries.
// Several tenants may register one issuer with different audiences, or even
// the same one: then the tenant named by the request decides. A named tenant
// that is not among them is left to the tenant check (403 tenant_mismatch).
func chooseTenant(regs []registration, aud []string, named string) (registration, error) {
	var match []registration
	for _, r := range regs {
		if slices.Contains(aud, r.OIDC.Audience) {
			match = append(match, r)
		}
	}
	switch {
	case len(match) == 0:
		return registration{}, fault.New(fault.Unauthenticated, "the token's audience is not registered by any tenant of its issuer")
	case len(match) == 1:
		return match[0], nil
	}
	if named == "" {
		return registration{}, errAmbiguousTenant
	}
	for _, r := range match {
		if identity.NamesTenant(named, r.TenantID, r.Slug) {
			return r, nil
		}
	}
	return match[0], nil
}

// member finds the token's user among the tenant's members: by (issuer,
// subject); else, on a first sign-in, by a verified email matching a
// pending invitation (which is then bound to the subject); else by JIT
// sign-up for an allowed email domain. Otherwise the user is no member.
func (s *Service) member(ctx context.Context, reg registration, tok token) (Member, error) {
	key := memberKey{reg.TenantID, tok.Issuer, tok.Subject}
	if s.members != nil {
		if m, ok := s.members.Get(key); ok {
			return m, nil
		}
	}
	m, err := s.resolveMember(ctx, reg, tok)
	if err == nil && s.members != nil {
		s.members.Add(key, m)
	}
	return m, err
}

func (s *Service) resolveMember(ctx context.Context, reg registration, tok token) (Member, error) {
	var m Member
	err := s.db.WithTenant(ctx, reg.TenantID, func(tx *gorm.DB) (err error) {
		m, err = memberBySubject(tx, tok.Issuer, tok.Subject)
		return err
	})
	if !errors.Is(err, ErrMemberNotFound) {
		return m, err
	}
	email, verified := claimEmail(tok.Claims)
	if !verified && tok.Access {
		// Many providers put no email in access tokens: ask userinfo.
		if email, verified, err = s.issuers.userInfo(ctx, tok); err != nil {
			s.log.WarnContext(ctx, "oidc: userinfo failed; treating the user as not yet a member", "issuer", tok.Issuer, "err", err)
			return Member{}, ErrNotMember
		}
	}
	if !verified || email == "" {
		return Member{}, ErrNotMember
	}
	err = s.db.WithTenant(ctx, reg.TenantID, func(tx *gorm.DB) (err error) {
		via := "invitation"
		m, err = claimInvitation(tx, email, tok.Issuer, tok.Subject)
		switch {
		case errors.Is(err, ErrMemberNotFound):
			if !slices.Contains(reg.OIDC.JITEmailDomains, emailDomain(email)) || reg.OIDC.JITDefaultRole == "" {
				return ErrNotMember
			}
			now := s.now().UTC().Truncate(time.Microsecond)
			m = Member{ID: newID(), TenantID: reg.TenantID, Issuer: tok.Issuer, Subject: tok.Subject, Email: email,
				Roles: []string{reg.OIDC.JITDefaultRole}, Status: MemberActive, CreatedBy: "jit", CreatedAt: now, UpdatedAt: now, LastSignInAt: &now}
			if err := insertMember(tx, m); err != nil {
				return err
			}
			via = "jit"
		case err != nil:
			return err
		}
		return audit.Record(ctx, tx, reg.TenantID, audit.Entry{Actor: string(identity.KindUser) + ":" + tok.Subject,
			Action: "member.first_sign_in", Resource: "member:" + m.ID.String(),
			Summary: map[string]any{"after": map[string]any{"status": m.Status, "roles": m.Roles, "via": via, "issuer": tok.Issuer}}})
	})
	if errors.Is(err, ErrMemberExists) {
		// A concurrent first sign-in of the same user bound it first.
		err = s.db.WithTenant(ctx, reg.TenantID, func(tx *gorm.DB) (err error) {
			m, err = memberBySubject(tx, tok.Issuer, tok.Subject)
			return err
		})
		if errors.Is(err, ErrMemberNotFound) {
			return Member{}, ErrNotMember
		}
	}
	if err == nil {
		s.log.InfoContext(ctx, "member signed in for the first time", "tenant_id", reg.TenantID, "member_id", m.ID, "via", m.CreatedBy)
	}
	return m, err
}

// claimEmail returns the email claim and whether the provider verified it
// (email_verified true, or the string "true" some providers send).
func claimEmail(c map[string]any) (string, bool) {
	email, _ := c["email"].(string)
	switch v := c["email_verified"].(type) {
	case bool:
		return strings.ToLower(email), v
	case string:
		return strings.ToLower(email), v == "true"
	}
	return strings.ToLower(email), false
}

// claimRoles reads a roles claim: an array of strings or a space-separated
// string.
func claimRoles(v any) []string {
	switch r := v.(type) {
	case string:
		return strings.Fields(r)
	case []any:
		var out []string
		for _, x := range r {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func newID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.New()
	}
	return id
}
