package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/tenantd/tenantd/internal/identity"
)

// The last admin. A tenant keeps at least one credential that can act as
// its admin right now: an API key with the built-in admin role that is
// neither revoked nor expired, or an active member with the admin role
// bound to the issuer the tenant has registered. Pending invitations do
// not count (nobody may ever claim them), nor do admin roles that a
// roles_claim or JIT sign-up would give (the identity provider decides
// those, not the tenant's data), nor do members bound to an issuer the
// tenant no longer accepts. Removing, demoting or revoking the last such
// credential is refused with 409 last_admin.

// adminRole is the built-in role the last-admin rule keeps.
const adminRole = "admin"

// credential is the member or API key a change acts on, as read.
type credential struct {
	roles []string
	// admin: the credential counts as one of the tenant's admins now.
	admin bool
}

// target names the member or the API key a change acts on.
type target struct {
	member, key uuid.UUID // exactly one is set
}

func memberTarget(id uuid.UUID) target { return target{member: id} }
func keyTarget(id uuid.UUID) target    { return target{key: id} }

// adminMembers says which active members count as admins: those bound to
// issuer, or any issuer when all is true (the service cannot ask the
// tenant which issuer it registered).
type adminMembers struct {
	issuer string
	all    bool
}

// adminMembersOf returns which members of the tenant count as admins.
func (s *Service) adminMembersOf(ctx context.Context, tenantID uuid.UUID) (adminMembers, error) {
	if s.tenantIssuers == nil {
		return adminMembers{all: true}, nil
	}
	issuer, err := s.tenantIssuers.OIDCIssuer(ctx, tenantID)
	return adminMembers{issuer: issuer}, err
}

// read returns the target as it is in tx (locked when tx locks).
func (t target) read(tx *gorm.DB, am adminMembers, now time.Time) (credential, error) {
	if t.member != uuid.Nil {
		m, err := findMember(tx, "id = ?", t.member)
		if err != nil {
			return credential{}, err
		}
		bound := m.Status == MemberActive && (am.all || (am.issuer != "" && m.Issuer == am.issuer))
		return credential{roles: m.Roles, admin: bound && slices.Contains(m.Roles, adminRole)}, nil
	}
	k, err := findKey(tx, t.key)
	if err != nil {
		return credential{}, err
	}
	if k.RevokedAt != nil {
		return credential{}, ErrKeyNotFound
	}
	live := k.ExpiresAt == nil || k.ExpiresAt.After(now)
	return credential{roles: k.Roles, admin: live && slices.Contains(k.Roles, adminRole)}, nil
}

// errTargetChanged means the target changed between the check and the
// locked change: the change starts over.
var errTargetChanged = errors.New("the member or key changed meanwhile")

// changeAttempts bounds how often a change starts over because its target
// kept changing.
const changeAttempts = 3

// actOn runs apply on the member or key t of the tenant, in one
// transaction with the target locked. Unless actor is nil (a trusted
// caller), the actor must hold every permission of the target's roles
// (what names the change in the refusal). When removesAdmin says the
// change takes the admin role away from the target and the target counts
// as an admin, every admin of the tenant is locked and the change is
// refused with ErrLastAdmin unless another remains.
//
// The target is read and the permissions checked first, outside the
// locking transaction (the check may load the tenant's roles); the
// transaction then locks and reads the target again and starts over if it
// changed meanwhile.
func (s *Service) actOn(ctx context.Context, tenantID uuid.UUID, actor *identity.Principal, t target, what string,
	removesAdmin func(before credential) bool, apply func(tx *gorm.DB, cur credential) error) error {
	am, err := s.adminMembersOf(ctx, tenantID)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < changeAttempts; attempt++ {
		var before credential
		err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
			before, err = t.read(tx, am, s.now())
			return err
		})
		if err != nil {
			return err
		}
		if actor != nil {
			if err := s.checkHolds(ctx, *actor, what, before.roles); err != nil {
				return err
			}
		}
		dropsAdmin := before.admin && removesAdmin(before)
		err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
			others := 0
			if dropsAdmin {
				var err error
				if others, err = lockAdmins(tx, am, t); err != nil {
					return err
				}
			}
			cur, err := t.read(tx.Clauses(clause.Locking{Strength: "UPDATE"}), am, s.now())
			if err != nil {
				return err
			}
			if cur.admin != before.admin || !slices.Equal(cur.roles, before.roles) {
				return errTargetChanged
			}
			if dropsAdmin && others == 0 {
				return ErrLastAdmin
			}
			return apply(tx, cur)
		})
		if !errors.Is(err, errTargetChanged) {
			return err
		}
	}
	return ErrChangedMeanwhile
}

// lockAdmins locks the tenant's admins, and the target with them, in the
// house lock order (api_keys, then members, each by primary key), and
// returns how many admins there are besides the target. Two concurrent
// changes that each take away an admin therefore run one after the other,
// and the second sees the first's result (a row locked after waiting is
// read again, and left out if it no longer matches): the last admin
// cannot be lost to a race.
func lockAdmins(tx *gorm.DB, am adminMembers, t target) (others int, err error) {
	type locked struct {
		ID    uuid.UUID
		Admin bool
	}
	var keys, members []locked
	if err := tx.Raw(`SELECT id, (? = ANY(roles) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) AS admin
		FROM api_keys
		WHERE id = ? OR (? = ANY(roles) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))
		ORDER BY id FOR UPDATE`, adminRole, t.key, adminRole).Scan(&keys).Error; err != nil {
		return 0, fmt.Errorf("lock admin keys: %w", err)
	}
	if err := tx.Raw(`SELECT id, (? = ANY(roles) AND status = 'active' AND (? OR issuer = ?)) AS admin
		FROM members
		WHERE id = ? OR (? = ANY(roles) AND status = 'active' AND (? OR issuer = ?))
		ORDER BY id FOR UPDATE`, adminRole, am.all, am.issuer, t.member, adminRole, am.all, am.issuer).Scan(&members).Error; err != nil {
		return 0, fmt.Errorf("lock admin members: %w", err)
	}
	for _, r := range append(keys, members...) {
		if r.Admin && r.ID != t.key && r.ID != t.member {
			others++
		}
	}
	return others, nil
}
