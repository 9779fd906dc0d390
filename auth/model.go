package auth

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
)

// Permissions lists every permission of the API contract, as object:action.
var Permissions = []string{
	"tenant:read", "tenant:write",
	// tenant:export: the tenant's data export (GDPR access, package gdpr).
	"tenant:export",
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
	// ErrEscalation is the kind of refusal Lacking details: nobody grants
	// what they do not hold.
	ErrEscalation = fault.New(fault.Forbidden, "nobody grants what they do not hold")
	// ErrLastAdmin refuses to remove, demote or revoke the tenant's last
	// admin (see lockAdmins). Its code is the contract's last_admin (409).
	ErrLastAdmin = fault.New(fault.LastAdmin, "this is the tenant's last admin: make another member or API key admin first")
	// ErrChangedMeanwhile answers a change whose target kept changing
	// under it; the client may simply retry.
	ErrChangedMeanwhile = fault.New(fault.Conflict, "the member or key changed while it was being changed; try again")
)

// Lacking returns the 403 for an actor who lacks the permissions missing
// (in the contract's order) for what it tried: nobody grants, takes away
// or acts on what they do not hold.
func Lacking(what string, missing []string) error {
	return fault.New(fault.Forbidden, fmt.Sprintf("%s needs every permission it hands out or acts on; you lack %s",
		what, strings.Join(missing, ", ")))
}

// DefaultMaxKeyTTL is the longest an API key lives unless WithMaxKeyTTL
// (API_KEY_MAX_TTL) says otherwise: a key without expires_at gets it.
const DefaultMaxKeyTTL = 365 * 24 * time.Hour

// Validate checks a new key's fields at time now, normalising the roles.
// The key's lifetime is bound separately (Bound).
func (n *NewKey) Validate(now time.Time) error {
	var f fault.Fields
	n.Name = strings.TrimSpace(n.Name)
	if l := utf8.RuneCountInString(n.Name); l < 1 || l > 100 || hasControl(n.Name) {
		f.Add("name", "must be 1 to 100 characters, without control characters")
	}
	validateRoleNames(&f, n.Roles)
	n.Roles = dedupe(n.Roles)
	if n.ExpiresAt != nil && !n.ExpiresAt.After(now) {
		f.Add("expires_at", "must be in the future")
	}
	return f.Err()
}

// hasControl reports whether s holds a control character (tab and line
// breaks included): names and identifiers are one line of text.
func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

// Bound makes the key expire no later than notAfter: a key without
// expires_at gets notAfter, one asking for later is refused naming
// expires_at, with why (what sets the bound).
func (n *NewKey) Bound(notAfter time.Time, why string) error {
	notAfter = notAfter.UTC().Truncate(time.Microsecond)
	if n.ExpiresAt == nil {
		n.ExpiresAt = &notAfter
		return nil
	}
	if n.ExpiresAt.After(notAfter) {
		return fault.Invalid(fault.Field("expires_at", "must be no later than "+notAfter.Format(time.RFC3339)+": "+why))
	}
	return nil
}

// days writes a lifetime for people: whole days when it is.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
	return d.String()
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
