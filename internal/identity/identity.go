// Package identity carries the authenticated principal of a request through
// its context, so every module can ask who is acting and for which tenant
// without depending on how the credential was checked.
package identity

import (
	"context"
	"strings"

	"github.com/google/uuid"
)

// Kind says what sort of credential authenticated a principal.
type Kind string

// Credential kinds.
const (
	KindAPIKey   Kind = "api_key"
	KindUser     Kind = "user"
	KindOperator Kind = "operator"
)

// Principal is who is acting, in which tenant, with which roles.
type Principal struct {
	Kind       Kind
	TenantID   uuid.UUID // uuid.Nil for operators
	TenantSlug string
	Plan       string
	// TenantStatus is the tenant's status when the credential was checked.
	TenantStatus string
	Subject      string // api key id, user subject, or "operator"
	Roles        []string
	KeyID        uuid.UUID // set for API keys
	MemberID     uuid.UUID // set for members signed in with OIDC
}

// Actor is a short, log-safe description of the principal, e.g. "api_key:0190…".
func (p Principal) Actor() string {
	return string(p.Kind) + ":" + p.Subject
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of the request, if authenticated.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying the request id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

type namedTenantKey struct{}

// WithNamedTenant returns ctx carrying the tenant the request names (by
// X-Tenant or subdomain), a slug or an id.
func WithNamedTenant(ctx context.Context, named string) context.Context {
	return context.WithValue(ctx, namedTenantKey{}, named)
}

// NamedTenant returns the tenant the request names, or "".
func NamedTenant(ctx context.Context) string {
	s, _ := ctx.Value(namedTenantKey{}).(string)
	return s
}

// NamesTenant reports whether named, a tenant as a request names it (see
// WithNamedTenant), is the tenant with this id and slug: a request names a
// tenant by its slug or its id, in any letter case. This is the one place
// that rule is written.
func NamesTenant(named string, id uuid.UUID, slug string) bool {
	return named != "" && (strings.EqualFold(named, slug) || strings.EqualFold(named, id.String()))
}
