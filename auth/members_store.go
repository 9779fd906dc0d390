package auth

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/page"
)

// memberRow is the members row.
type memberRow struct {
	TenantID     uuid.UUID
	ID           uuid.UUID
	Issuer       *string
	Subject      *string
	Email        *string
	Roles        db.TextArray
	Status       string
	CreatedBy    string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	LastSignInAt *time.Time
}

func (memberRow) TableName() string { return "members" }

func (r memberRow) toModel() Member {
	return Member{
		ID: r.ID, TenantID: r.TenantID, Issuer: deref(r.Issuer), Subject: deref(r.Subject), Email: deref(r.Email),
		Roles: []string(r.Roles), Status: MemberStatus(r.Status), CreatedBy: r.CreatedBy,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), LastSignInAt: utc(r.LastSignInAt),
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func ptr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func insertMember(tx *gorm.DB, m Member) error {
	r := memberRow{
		TenantID: m.TenantID, ID: m.ID, Issuer: ptr(m.Issuer), Subject: ptr(m.Subject), Email: ptr(m.Email),
		Roles: db.TextArray(m.Roles), Status: string(m.Status), CreatedBy: m.CreatedBy,
		CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt, LastSignInAt: m.LastSignInAt,
	}
	if err := tx.Create(&r).Error; err != nil {
		if db.IsUniqueViolation(err) {
			return ErrMemberExists
		}
		return fmt.Errorf("insert member: %w", err)
	}
	return nil
}

func findMember(tx *gorm.DB, where string, args ...any) (Member, error) {
	r, err := db.Take[memberRow](tx.Where(where, args...), false, ErrMemberNotFound)
	return r.toModel(), err
}

func memberBySubject(tx *gorm.DB, issuer, subject string) (Member, error) {
	return findMember(tx, "issuer = ? AND subject = ?", issuer, subject)
}

func listMembers(tx *gorm.DB, after uuid.UUID, limit int) ([]Member, error) {
	out, err := page.Find(tx, after, limit, func(r memberRow) (Member, error) { return r.toModel(), nil })
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	return out, nil
}

func setMemberRoles(tx *gorm.DB, id uuid.UUID, roles []string) (Member, error) {
	var r memberRow
	res := tx.Raw(`UPDATE members SET roles = ?, updated_at = now() WHERE id = ? RETURNING *`, db.TextArray(roles), id).Scan(&r)
	if err := oneRow(res, "update member", ErrMemberNotFound); err != nil {
		return Member{}, err
	}
	return r.toModel(), nil
}

func deleteMember(tx *gorm.DB, id uuid.UUID) error {
	return oneRow(tx.Exec(`DELETE FROM members WHERE id = ?`, id), "delete member", ErrMemberNotFound)
}

// memberRoles returns every role name held by a member or a pending
// invitation of the tenant.
func memberRoles(tx *gorm.DB) ([]string, error) {
	var roles []string
	if err := tx.Raw(`SELECT DISTINCT unnest(roles) AS role FROM members ORDER BY role`).Scan(&roles).Error; err != nil {
		return nil, fmt.Errorf("member roles: %w", err)
	}
	return roles, nil
}

// claimInvitation binds the pending invitation for email to (issuer,
// subject). Of two concurrent first sign-ins, one claims it; the other
// finds no invitation and then the bound member.
func claimInvitation(tx *gorm.DB, email, issuer, subject string) (Member, error) {
	var r memberRow
	res := tx.Raw(`UPDATE members SET issuer = ?, subject = ?, status = 'active', last_sign_in_at = now(), updated_at = now()
		WHERE status = 'invited' AND lower(email) = lower(?) RETURNING *`, issuer, subject, email).Scan(&r)
	if db.IsUniqueViolation(res.Error) {
		return Member{}, ErrMemberExists
	}
	if err := oneRow(res, "claim invitation", ErrMemberNotFound); err != nil {
		return Member{}, err
	}
	return r.toModel(), nil
}

// oidcRegistration is a tenant that registered an issuer, from
// auth_oidc_tenants.
type oidcRegistration struct {
	TenantID     uuid.UUID
	TenantSlug   string
	TenantStatus string
	TenantPlan   string
	OIDC         []byte `gorm:"column:oidc"`
}

func lookupRegistrations(tx *gorm.DB, issuer string) ([]oidcRegistration, error) {
	var rows []oidcRegistration
	if err := tx.Raw(`SELECT * FROM auth_oidc_tenants(?)`, issuer).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("look up oidc tenants: %w", err)
	}
	return rows, nil
}
