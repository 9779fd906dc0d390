package auth

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
)

// Permissions lists every permission of the API contract, as object:action.
var Permissions = []string{
	"tenant:read", "tenant:write",
	"members:read", "members:write",
	"roles:read", "roles:write",
	"api_keys:read", "api_keys:write",
	"products:read", "products:write",
	"inventory:adjust",
	"orders:read", "orders:write",
	"payments:read", "payments:write", "payments:refund",
	"usage:read",
	"audit:read",
	"webhooks:read", "webhooks:write",
	"events:read",
}

// BuiltinRoles are the roles every tenant has, with the permissions each grants.
var BuiltinRoles = map[string][]string{
	"admin":   Permissions,
	"clerk":   {"products:read", "orders:read", "orders:write", "payments:read", "payments:write", "events:read"},
	"viewer":  viewerPermissions(),
	"billing": {"usage:read", "payments:read", "tenant:read"},
}

// viewer has every :read except audit:read and members:read.
func viewerPermissions() []string {
	var out []string
	for _, p := range Permissions {
		if strings.HasSuffix(p, ":read") && p != "audit:read" && p != "members:read" {
			out = append(out, p)
		}
	}
	return out
}

// KnownPermission reports whether p is a permission of the contract.
func KnownPermission(p string) bool { return slices.Contains(Permissions, p) }

// PermissionsOf returns the set of permissions the roles grant together.
// Unknown role names grant nothing.
func PermissionsOf(roles []string) map[string]bool {
	set := make(map[string]bool)
	for _, r := range roles {
		for _, p := range BuiltinRoles[r] {
			set[p] = true
		}
	}
	return set
}

// Key is a tenant API key as stored: everything but its secret.
type Key struct {
	ID        uuid.UUID
	TenantID  uuid.UUID
	Name      string
	Prefix    string
	Roles     []string
	CreatedBy string
	ExpiresAt *time.Time
	RevokedAt *time.Time
	CreatedAt time.Time
}

// NewKey is the input for creating an API key.
type NewKey struct {
	Name      string
	Roles     []string
	ExpiresAt *time.Time
}

// Sentinel errors.
var (
	ErrKeyNotFound     = fault.New(fault.NotFound, "API key not found")
	ErrUnauthenticated = fault.New(fault.Unauthenticated, "a valid credential is required: Authorization: Bearer <API key>")
	ErrEscalation      = fault.New(fault.Forbidden, "a key cannot be given a permission its creator does not have")
)

// Validate checks a new key's fields at time now, normalising the roles.
func (n *NewKey) Validate(now time.Time) error {
	var f fault.Fields
	n.Name = strings.TrimSpace(n.Name)
	if l := utf8.RuneCountInString(n.Name); l < 1 || l > 100 {
		f.Add("name", "must be 1 to 100 characters")
	}
	validateRoleNames(&f, n.Roles)
	n.Roles = dedupe(n.Roles)
	if n.ExpiresAt != nil && !n.ExpiresAt.After(now) {
		f.Add("expires_at", "must be in the future")
	}
	return f.Err()
}

func dedupe(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return `"` + s + `"`
}
