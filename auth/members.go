package auth

import (
	"net/mail"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
)

// MemberStatus is where a member stands: invited (waiting for a first
// sign-in with the invited, verified email) or active (bound to an issuer
// and subject).
type MemberStatus string

// Member statuses.
const (
	MemberInvited MemberStatus = "invited"
	MemberActive  MemberStatus = "active"
)

// Member is a user of a tenant, signed in through the tenant's identity
// provider.
type Member struct {
	ID           uuid.UUID
	TenantID     uuid.UUID
	Issuer       string
	Subject      string
	Email        string
	Roles        []string
	Status       MemberStatus
	CreatedBy    string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	LastSignInAt *time.Time
}

// NewMember adds a member: by Email (an invitation claimed on first
// sign-in) or by Subject at the tenant's issuer (active at once).
type NewMember struct {
	Email   string
	Subject string
	Roles   []string
}

// Member errors.
var (
	ErrMemberNotFound = fault.New(fault.NotFound, "member not found")
	ErrMemberExists   = fault.New(fault.Conflict, "a member with this subject or a pending invitation for this email already exists")
	ErrNotMember      = fault.New(fault.Forbidden, "you are signed in, but not a member of this tenant; ask an admin for an invitation")
	ErrNoIssuer       = fault.Invalid(fault.Field("subject", "the tenant has no identity provider: set oidc.issuer with PATCH /v1/tenant first"))
)

// Validate checks and normalises a new member.
func (n *NewMember) Validate() error {
	var f fault.Fields
	n.Email = strings.ToLower(strings.TrimSpace(n.Email))
	n.Subject = strings.TrimSpace(n.Subject)
	switch {
	case n.Email == "" && n.Subject == "":
		f.Add("email", "give email (an invitation) or subject (a user at the tenant's issuer)")
	case n.Email != "" && n.Subject != "":
		f.Add("subject", "give email or subject, not both")
	case n.Email != "":
		if !validEmail(n.Email) || hasControl(n.Email) {
			f.Add("email", "must be an email address")
		}
	default:
		if len(n.Subject) > 255 || hasControl(n.Subject) {
			f.Add("subject", "must be at most 255 characters, without control characters")
		}
	}
	validateRoleNames(&f, n.Roles)
	n.Roles = dedupe(n.Roles)
	return f.Err()
}

// validateRoleNames checks role names are present and well-formed; whether
// they exist in the tenant is the service's question.
func validateRoleNames(f *fault.Fields, roles []string) {
	if len(roles) == 0 {
		f.Add("roles", "at least one role is required")
	}
	if len(roles) > 20 {
		f.Add("roles", "at most 20 roles")
	}
	for _, r := range roles {
		if r == "" || len(r) > 40 {
			f.Add("roles", "role names are 1 to 40 characters")
			return
		}
	}
}

func validEmail(s string) bool {
	if len(s) < 3 || len(s) > 320 {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

// emailDomain returns the part after @, lowercased.
func emailDomain(email string) string {
	_, d, _ := strings.Cut(strings.ToLower(email), "@")
	return d
}
