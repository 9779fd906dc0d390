package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/casbin/casbin/v2"
	rediswatcher "github.com/casbin/redis-watcher/v2"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
)

// Role is a role of a tenant: a built-in one, the same in every tenant and
// immutable, or one the tenant defined.
type Role struct {
	Name        string
	Permissions []string // in the order of Permissions
	Builtin     bool
}

// ETag is a strong entity tag of the role's name and permissions, for
// If-Match on changes.
func (r Role) ETag() string {
	h := sha256.Sum256([]byte(r.Name + "\n" + strings.Join(r.Permissions, ",")))
	return `"` + hex.EncodeToString(h[:8]) + `"`
}

// MaxCustomRoles is how many roles of its own a tenant may define.
const MaxCustomRoles = 250

// maxPermissionsListed bounds the permissions list of a request, before
// duplicates are removed.
const maxPermissionsListed = 100

// roleNamePattern is the form of a custom role's name: 2 to 40 of a-z, 0-9,
// '_' and '-', starting with a letter.
var roleNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{1,39}$`)

// Role errors. Built-in roles answer 409: no permission could allow
// changing them, so it is the role's state, not the caller's rights, that
// refuses.
var (
	ErrRoleNotFound = fault.New(fault.NotFound, "role not found")
	ErrRoleExists   = fault.New(fault.Conflict, "a role with this name already exists in the tenant")
	ErrBuiltinRole  = fault.New(fault.Conflict, "built-in roles (admin, billing, clerk, viewer) cannot be created, changed or deleted")
	// ErrRoleEscalation is the kind of refusal Lacking details for roles.
	ErrRoleEscalation = fault.New(fault.Forbidden, "a role cannot be created, changed or deleted with a permission the actor does not have")
	ErrTooManyRoles   = fault.New(fault.Conflict, fmt.Sprintf("a tenant can define at most %d roles", MaxCustomRoles))
	ErrRoleChanged    = fault.New(fault.PreconditionFailed, "the role has changed since it was read (If-Match does not match its ETag)")
)

// validateRoleName checks the form of a new custom role's name.
func validateRoleName(f *fault.Fields, name string) {
	if !roleNamePattern.MatchString(name) {
		f.Add("name", "must be 2 to 40 characters of a-z, 0-9, '_' and '-', starting with a letter")
	}
}

// validatePermissions checks a role's permissions: at least one, all from
// the contract. It returns them as a set.
func (r *RBAC) validatePermissions(f *fault.Fields, perms []string) permSet {
	if len(perms) == 0 {
		f.Add("permissions", "at least one permission is required")
		return 0
	}
	if len(perms) > maxPermissionsListed {
		f.Add("permissions", fmt.Sprintf("at most %d entries", maxPermissionsListed))
		return 0
	}
	set, unknown := r.setOf(perms)
	for _, p := range unknown {
		f.Add("permissions", "unknown permission "+quote(p)+"; permissions are object:action from the API contract, e.g. orders:read")
	}
	return set
}

// ListRoles returns the built-in roles and the tenant's own, by name. The
// tenant's roles are read from the database, not the decision cache.
func (r *RBAC) ListRoles(ctx context.Context, tenantID uuid.UUID) ([]Role, error) {
	if tenantID == uuid.Nil {
		return nil, ErrUnauthenticated
	}
	loaded, err := r.load(ctx, []uuid.UUID{tenantID})
	if err != nil {
		return nil, err
	}
	out := make([]Role, 0, len(r.builtin)+len(loaded[tenantID].roles))
	for name, set := range r.builtin {
		out = append(out, Role{Name: name, Permissions: r.names(set), Builtin: true})
	}
	for name, set := range loaded[tenantID].roles {
		out = append(out, Role{Name: name, Permissions: r.names(set)})
	}
	slices.SortFunc(out, func(a, b Role) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// CreateRole defines a role in the actor's tenant. The actor must hold
// every permission the role grants.
func (r *RBAC) CreateRole(ctx context.Context, actor identity.Principal, in Role) (Role, error) {
	var f fault.Fields
	name := strings.TrimSpace(in.Name)
	validateRoleName(&f, name)
	want := r.validatePermissions(&f, in.Permissions)
	if err := f.Err(); err != nil {
		return Role{}, err
	}
	if _, ok := r.builtin[name]; ok {
		return Role{}, ErrBuiltinRole
	}
	out := Role{Name: name, Permissions: r.names(want)}
	err := r.change(ctx, actor.TenantID, func(p *tenantPolicy) (announcement, error) {
		if _, ok := p.custom.roles[name]; ok {
			return nil, ErrRoleExists
		}
		if len(p.custom.roles) >= MaxCustomRoles {
			return nil, ErrTooManyRoles
		}
		if lacking := want &^ p.grants(actor.Roles); lacking != 0 {
			return nil, Lacking("creating a role", r.names(lacking))
		}
		rules := p.rules(name, want)
		if err := p.add(rules); err != nil {
			return nil, err
		}
		p.entry = &audit.Entry{Action: "role.created", Resource: "role:" + name,
			Summary: map[string]any{"after": map[string]any{"permissions": out.Permissions}}}
		return func(w *policyWatcher) error {
			return w.publish(rediswatcher.MSG{Method: rediswatcher.UpdateForAddPolicies, Sec: "p", Ptype: "p", NewRules: rules})
		}, nil
	})
	if err != nil {
		return Role{}, err
	}
	return out, nil
}

// UpdateRole replaces the permissions of one of the tenant's roles. The
// change acts on every member and key holding the role, so the actor must
// hold every permission of the role, before and after: nobody grants or
// takes away what they do not hold. ifMatch, when not empty, must be the
// role's current ETag (or "*").
func (r *RBAC) UpdateRole(ctx context.Context, actor identity.Principal, name string, perms []string, ifMatch string) (Role, error) {
	if _, ok := r.builtin[name]; ok {
		return Role{}, ErrBuiltinRole
	}
	var f fault.Fields
	want := r.validatePermissions(&f, perms)
	if err := f.Err(); err != nil {
		return Role{}, err
	}
	out := Role{Name: name, Permissions: r.names(want)}
	err := r.change(ctx, actor.TenantID, func(p *tenantPolicy) (announcement, error) {
		have, ok := p.custom.roles[name]
		if !ok {
			return nil, ErrRoleNotFound
		}
		if ifMatch != "" && ifMatch != "*" && ifMatch != (Role{Name: name, Permissions: r.names(have)}).ETag() {
			return nil, ErrRoleChanged
		}
		if lacking := (want | have) &^ p.grants(actor.Roles); lacking != 0 {
			return nil, Lacking("changing a role", r.names(lacking))
		}
		old, err := p.e.GetFilteredPolicy(0, name, p.domain)
		if err != nil {
			return nil, fmt.Errorf("rbac: read role %s: %w", name, err)
		}
		rules := p.rules(name, want)
		if slices.EqualFunc(sortedRules(old), sortedRules(rules), slices.Equal[[]string]) {
			return nil, nil
		}
		if err := p.remove(0, name, p.domain); err != nil {
			return nil, err
		}
		if err := p.add(rules); err != nil {
			return nil, err
		}
		p.entry = &audit.Entry{Action: "role.updated", Resource: "role:" + name,
			Summary: map[string]any{"before": map[string]any{"permissions": r.names(have)}, "after": map[string]any{"permissions": out.Permissions}}}
		return func(w *policyWatcher) error {
			return w.publish(rediswatcher.MSG{Method: rediswatcher.UpdateForUpdatePolicies, Sec: "p", Ptype: "p", OldRules: old, NewRules: rules})
		}, nil
	})
	if err != nil {
		return Role{}, err
	}
	return out, nil
}

// DeleteRole deletes one of the tenant's roles. Keys and members that name
// it keep the name, which then grants nothing; so the actor must hold
// every permission of the role.
func (r *RBAC) DeleteRole(ctx context.Context, actor identity.Principal, name string) error {
	if _, ok := r.builtin[name]; ok {
		return ErrBuiltinRole
	}
	return r.change(ctx, actor.TenantID, func(p *tenantPolicy) (announcement, error) {
		have, ok := p.custom.roles[name]
		if !ok {
			return nil, ErrRoleNotFound
		}
		if lacking := have &^ p.grants(actor.Roles); lacking != 0 {
			return nil, Lacking("deleting a role", r.names(lacking))
		}
		if err := p.remove(0, name, p.domain); err != nil {
			return nil, err
		}
		p.entry = &audit.Entry{Action: "role.deleted", Resource: "role:" + name,
			Summary: map[string]any{"before": map[string]any{"permissions": r.names(have)}}}
		return func(w *policyWatcher) error {
			return w.publish(rediswatcher.MSG{Method: rediswatcher.UpdateForRemoveFilteredPolicy, Sec: "p", Ptype: "p",
				FieldIndex: 0, FieldValues: []string{name, p.domain}})
		}, nil
	})
}

// DeleteTenantRoles deletes every policy rule of the tenant, for erasing a
// tenant: casbin_rule has no tenant_id column for a cascade to follow. It
// returns how many rules it removed.
func (r *RBAC) DeleteTenantRoles(ctx context.Context, tenantID uuid.UUID) (removed int, err error) {
	err = r.change(ctx, tenantID, func(p *tenantPolicy) (announcement, error) {
		rules, err := p.e.GetFilteredPolicy(1, p.domain)
		if err != nil || len(rules) == 0 {
			return nil, err
		}
		if err := p.remove(1, p.domain); err != nil {
			return nil, err
		}
		removed = len(rules)
		return func(w *policyWatcher) error {
			return w.publish(rediswatcher.MSG{Method: rediswatcher.UpdateForRemoveFilteredPolicy, Sec: "p", Ptype: "p",
				FieldIndex: 1, FieldValues: []string{p.domain}})
		}, nil
	})
	return removed, err
}

// announcement sends a committed change to the other replicas.
type announcement func(w *policyWatcher) error

// tenantPolicy is one tenant's Casbin policy, loaded for a change inside the
// transaction that holds the tenant's policy lock, with an enforcer whose
// adapter writes in that transaction.
type tenantPolicy struct {
	rbac   *RBAC
	e      *casbin.Enforcer
	domain string
	custom *tenantRoles // as loaded, before the change
	// entry, when fn sets it, is recorded in the tenant's audit trail in
	// the change's transaction.
	entry *audit.Entry
}

// grants is what the roles grant in the tenant before the change.
func (p *tenantPolicy) grants(roles []string) permSet {
	var set permSet
	for _, role := range roles {
		if s, ok := p.rbac.builtin[role]; ok {
			set |= s
		} else {
			set |= p.custom.roles[role]
		}
	}
	return set
}

// rules are the p rules that give role the permissions of set.
func (p *tenantPolicy) rules(role string, set permSet) [][]string {
	names := p.rbac.names(set)
	out := make([][]string, len(names))
	for i, perm := range names {
		obj, act, _ := strings.Cut(perm, ":")
		out[i] = []string{role, p.domain, obj, act}
	}
	return out
}

func (p *tenantPolicy) add(rules [][]string) error {
	ok, err := p.e.AddPolicies(rules)
	if err != nil {
		return fmt.Errorf("rbac: add rules: %w", err)
	}
	if !ok {
		return fmt.Errorf("rbac: add rules: %d rules already present", len(rules))
	}
	return nil
}

func (p *tenantPolicy) remove(field int, values ...string) error {
	if _, err := p.e.RemoveFilteredPolicy(field, values...); err != nil {
		return fmt.Errorf("rbac: remove rules: %w", err)
	}
	return nil
}

func sortedRules(rules [][]string) [][]string {
	out := slices.Clone(rules)
	slices.SortFunc(out, func(a, b []string) int { return slices.Compare(a, b) })
	return out
}

// policyLockClass namespaces the advisory locks that serialise changes to
// one tenant's policy across replicas.
const policyLockClass = 0x5242

// change runs fn on the tenant's current policy, inside one transaction
// that holds the tenant's policy lock, so checks and writes see no
// concurrent change from any replica. After the commit it drops this
// replica's cached copy and announces the change to the others: Casbin's
// own notification would fire before the commit, letting them reload the
// old state.
func (r *RBAC) change(ctx context.Context, tenantID uuid.UUID, fn func(p *tenantPolicy) (announcement, error)) error {
	if tenantID == uuid.Nil {
		return ErrUnauthenticated
	}
	domain := tenantID.String()
	var send announcement
	err := r.db.Unscoped(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT pg_advisory_xact_lock(?::int, hashtext(?))", policyLockClass, domain).Error; err != nil {
			return fmt.Errorf("rbac: lock tenant policy: %w", err)
		}
		// casbin_rule takes writes for the transaction's tenant only
		// (migration 0018), and the audit trail is the tenant's.
		if err := db.SetTenant(tx, tenantID); err != nil {
			return err
		}
		e, err := casbin.NewEnforcer(r.model.Copy(), &ruleTable{db: tx})
		if err != nil {
			return fmt.Errorf("rbac: enforcer: %w", err)
		}
		if err := e.LoadFilteredPolicy(domainFilter{domain}); err != nil {
			return fmt.Errorf("rbac: load tenant policy: %w", err)
		}
		rules, err := e.GetFilteredPolicy(1, domain)
		if err != nil {
			return fmt.Errorf("rbac: read tenant policy: %w", err)
		}
		custom := &tenantRoles{roles: map[string]permSet{}}
		for _, rule := range rules {
			r.compile(custom, rule)
		}
		p := &tenantPolicy{rbac: r, e: e, domain: domain, custom: custom}
		if send, err = fn(p); err != nil || p.entry == nil {
			return err
		}
		return audit.Record(ctx, tx, tenantID, *p.entry)
	})
	if err != nil {
		return err
	}
	if send == nil {
		return nil
	}
	r.forget(tenantID)
	r.announce(ctx, send)
	return nil
}
