package auth

import (
	"context"
	"slices"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
)

// PlatformIssuer is the identity provider of the platform's operators: its
// tokens for Audience that carry Role in RolesClaim may use /admin/v1.
type PlatformIssuer struct {
	Issuer, Audience, Role, RolesClaim string
}

// WithPlatformIssuer lets operators sign in with tokens from p. The issuer
// is the operator's own configuration, so it is trusted with any address.
func WithPlatformIssuer(p PlatformIssuer) Option {
	return func(s *Service) {
		s.platform = &p
		s.platformIssuers = newIssuers(IssuerPolicy{AllowInsecure: true}, s.log)
	}
}

var errNotOperator = fault.New(fault.Forbidden, "the token does not carry the platform operator role")

// AuthenticateOperator verifies a platform operator's token. Without a
// configured platform issuer every token is refused.
func (s *Service) AuthenticateOperator(ctx context.Context, raw string) (identity.Principal, error) {
	iss, ok := peekIssuer(raw)
	if s.platform == nil || !ok || iss != s.platform.Issuer {
		return identity.Principal{}, fault.New(fault.Unauthenticated, "an operator credential is required")
	}
	tok, err := s.platformIssuers.verify(ctx, iss, raw)
	if err != nil {
		return identity.Principal{}, err
	}
	if !slices.Contains(tok.Audience, s.platform.Audience) {
		return identity.Principal{}, ErrTokenInvalid
	}
	if !slices.Contains(claimRoles(tok.Claims[s.platform.RolesClaim]), s.platform.Role) {
		return identity.Principal{}, errNotOperator
	}
	return identity.Principal{Kind: identity.KindOperator, Subject: tok.Subject}, nil
}
