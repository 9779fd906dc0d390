package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/casbin/casbin/v2/model"
	rediswatcher "github.com/casbin/redis-watcher/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/identity"
)

// RBACModel is the Casbin model of tenantd: RBAC with domains, where the
// domain is the tenant id. A rule reads p, <role>, <tenant id>, <object>,
// <action>; the permission orders:write is object orders, action write.
// tenantd writes only p rules; built-in roles live in code (BuiltinRoles).
const RBACModel = `
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act
`

// policyTable is the table ruleTable reads and writes (migration 0002); it
// is outside tenant RLS, confined for writes to the transaction's tenant
// (migration 0018), and the runtime role cannot create it.
const policyTable = "casbin_rule"

// RBACOptions tune an RBAC; the zero value gives the defaults.
type RBACOptions struct {
	// ReloadInterval is how often every cached tenant's policy is read
	// again from PostgreSQL, the backstop for watcher messages lost while
	// Redis or the subscription was down. Default one minute.
	ReloadInterval time.Duration
	// Channel is the Redis pub/sub channel of the policy watcher.
	// Default "tenantd:casbin".
	Channel string
	// MaxTenants bounds how many tenants' compiled policies are cached;
	// past it random entries are dropped and reloaded on demand.
	// Default 100,000.
	MaxTenants int
}

func (o *RBACOptions) defaults() {
	if o.ReloadInterval <= 0 {
		o.ReloadInterval = time.Minute
	}
	if o.Channel == "" {
		o.Channel = "tenantd:casbin"
	}
	if o.MaxTenants <= 0 {
		o.MaxTenants = 100_000
	}
}

// permSet is a set of permissions, one bit per entry of Permissions.
type permSet uint64

// tenantRoles is one tenant's custom roles compiled from its Casbin policy:
// role name → the permissions Casbin's matcher grants it in the tenant.
// It is never modified once published.
type tenantRoles struct {
	roles map[string]permSet
}

// RBAC decides what roles grant in a tenant, and keeps tenants' custom roles
// as Casbin policy in PostgreSQL (ruleTable), announcing every change to
// the other replicas through a Redis pub/sub channel (policyWatcher, in
// the message format of Casbin's Redis watcher). It is safe for
// concurrent use.
//
// Decisions: built-in roles are compiled from BuiltinRoles once. A tenant's
// custom roles are loaded on first use with one filtered query (v1 = tenant
// id, so the cost does not grow with the number of tenants) into a Casbin
// model, and compiled into a table role → permission bits. For RBACModel
// (exact matches, allow-only effect, no g rules) that table holds exactly
// what Casbin's Enforce answers for every (role, tenant, permission); a test
// checks it against the enforcer. The table is a cache, dropped for a tenant
// when a watcher message names it or this process changes it, dropped
// entirely when the Redis subscription (re)connects, and refreshed from the
// database every ReloadInterval.
type RBAC struct {
	db   *db.DB
	rdb  *redis.Client // nil: changes reach other replicas only by reload
	log  *slog.Logger
	opts RBACOptions

	model   model.Model        // parsed RBACModel without rules; copied for each use
	bit     map[string]permSet // permission → its bit
	builtin map[string]permSet // built-in role → its permissions

	mu      sync.RWMutex
	tenants map[uuid.UUID]*tenantRoles
	// gen counts invalidations; a load publishes its result only if no
	// invalidation happened since it began reading.
	gen   atomic.Uint64
	loads singleflight.Group

	id          string // this replica's id in its announcements
	watcher     atomic.Pointer[policyWatcher]
	reconnected chan struct{}
}

// NewRBAC returns an RBAC on d. rdb, when not nil, carries policy changes
// between replicas; Run must then be running for them to arrive.
func NewRBAC(d *db.DB, rdb *redis.Client, log *slog.Logger, opts RBACOptions) (*RBAC, error) {
	opts.defaults()
	if len(Permissions) > 64 {
		return nil, fmt.Errorf("rbac: %d permissions do not fit a 64-bit set", len(Permissions))
	}
	m, err := model.NewModelFromString(RBACModel)
	if err != nil {
		return nil, fmt.Errorf("rbac: parse model: %w", err)
	}
	r := &RBAC{
		db: d, rdb: rdb, log: log, opts: opts, model: m,
		bit:         make(map[string]permSet, len(Permissions)),
		builtin:     make(map[string]permSet, len(BuiltinRoles)),
		tenants:     make(map[uuid.UUID]*tenantRoles),
		id:          uuid.NewString(),
		reconnected: make(chan struct{}, 1),
	}
	for i, p := range Permissions {
		r.bit[p] = 1 << i
	}
	for role, perms := range BuiltinRoles {
		set, unknown := r.setOf(perms)
		if len(unknown) > 0 {
			return nil, fmt.Errorf("rbac: built-in role %s grants unknown permissions %v", role, unknown)
		}
		r.builtin[role] = set
	}
	return r, nil
}

// Allowed reports whether any of the principal's roles grants permission in
// its tenant. Role names that are neither built in nor defined by the
// tenant grant nothing; a lookup failure denies.
func (r *RBAC) Allowed(ctx context.Context, p identity.Principal, permission string) bool {
	want, ok := r.bit[permission]
	if !ok || p.TenantID == uuid.Nil {
		return false
	}
	custom := false
	for _, role := range p.Roles {
		if set, ok := r.builtin[role]; ok {
			if set&want != 0 {
				return true
			}
			continue
		}
		custom = true
	}
	if !custom {
		return false
	}
	t, err := r.tenant(ctx, p.TenantID)
	if err != nil {
		r.log.ErrorContext(ctx, "rbac: could not load the tenant's roles; denying", "err", err, "tenant_id", p.TenantID)
		return false
	}
	for _, role := range p.Roles {
		if t.roles[role]&want != 0 {
			return true
		}
	}
	return false
}

// PermissionsOf returns the permissions the roles grant together in the
// tenant; names of roles that do not exist there grant nothing.
func (r *RBAC) PermissionsOf(ctx context.Context, tenantID uuid.UUID, roles []string) (map[string]bool, error) {
	set, err := r.grants(ctx, tenantID, roles)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, bits.OnesCount64(uint64(set)))
	for _, p := range r.names(set) {
		out[p] = true
	}
	return out, nil
}

// RoleExists reports whether role is a built-in role or one of the tenant's
// custom roles.
func (r *RBAC) RoleExists(ctx context.Context, tenantID uuid.UUID, role string) (bool, error) {
	if _, ok := r.builtin[role]; ok {
		return true, nil
	}
	if tenantID == uuid.Nil {
		return false, nil
	}
	t, err := r.tenant(ctx, tenantID)
	if err != nil {
		return false, err
	}
	_, ok := t.roles[role]
	return ok, nil
}

// grants returns the union of what the roles grant in the tenant.
func (r *RBAC) grants(ctx context.Context, tenantID uuid.UUID, roles []string) (permSet, error) {
	var set permSet
	custom := false
	for _, role := range roles {
		if s, ok := r.builtin[role]; ok {
			set |= s
		} else {
			custom = true
		}
	}
	if !custom || tenantID == uuid.Nil {
		return set, nil
	}
	t, err := r.tenant(ctx, tenantID)
	if err != nil {
		return 0, err
	}
	for _, role := range roles {
		set |= t.roles[role]
	}
	return set, nil
}

// setOf returns the set of the known permissions and the unknown ones.
func (r *RBAC) setOf(perms []string) (set permSet, unknown []string) {
	for _, p := range perms {
		if b, ok := r.bit[p]; ok {
			set |= b
		} else {
			unknown = append(unknown, p)
		}
	}
	return set, unknown
}

// names lists the permissions of set in the contract's order.
func (r *RBAC) names(set permSet) []string {
	out := make([]string, 0, bits.OnesCount64(uint64(set)))
	for i, p := range Permissions {
		if set&(1<<i) != 0 {
			out = append(out, p)
		}
	}
	return out
}

// loadTimeout bounds one load of tenants' policies; a load is shared by
// every request waiting for it, so it does not follow any one request's
// context.
const loadTimeout = 10 * time.Second

// tenant returns the tenant's compiled roles, loading them on first use.
func (r *RBAC) tenant(ctx context.Context, id uuid.UUID) (*tenantRoles, error) {
	r.mu.RLock()
	t := r.tenants[id]
	r.mu.RUnlock()
	if t != nil {
		return t, nil
	}
	gen := r.gen.Load()
	// Keyed by generation too: a request that arrives after an
	// invalidation must not share a load that began before it.
	key := id.String() + "@" + strconv.FormatUint(gen, 10)
	v, err, _ := r.loads.Do(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		loaded, err := r.load(ctx, []uuid.UUID{id})
		if err != nil {
			return nil, err
		}
		t := loaded[id]
		r.mu.Lock()
		if r.gen.Load() == gen {
			r.store(id, t)
		}
		r.mu.Unlock()
		return t, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*tenantRoles), nil
}

// store caches t; r.mu must be held for writing.
func (r *RBAC) store(id uuid.UUID, t *tenantRoles) {
	if _, ok := r.tenants[id]; !ok && len(r.tenants) >= r.opts.MaxTenants {
		// Map iteration order is random: this drops a random hundredth.
		drop := max(1, r.opts.MaxTenants/100)
		for k := range r.tenants {
			delete(r.tenants, k)
			if drop--; drop == 0 {
				break
			}
		}
	}
	r.tenants[id] = t
}

// load reads the tenants' rules through the Casbin adapter, filtered by
// domain, and compiles them. Every tenant asked for is in the result,
// with no roles when it has no rules.
func (r *RBAC) load(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]*tenantRoles, error) {
	domains := make([]string, len(ids))
	out := make(map[uuid.UUID]*tenantRoles, len(ids))
	for i, id := range ids {
		domains[i] = id.String()
		out[id] = &tenantRoles{roles: map[string]permSet{}}
	}
	a := &ruleTable{db: r.db.Unscoped(ctx)}
	m := r.model.Copy()
	if err := a.LoadFilteredPolicy(m, domainFilter(domains)); err != nil {
		return nil, fmt.Errorf("rbac: load policy of %d tenants: %w", len(ids), err)
	}
	for _, rule := range m["p"]["p"].Policy {
		id, err := uuid.Parse(rule[1])
		if err != nil {
			continue
		}
		if t, ok := out[id]; ok {
			r.compile(t, rule)
		}
	}
	return out, nil
}

// compile adds one p rule (role, tenant, object, action) to t. Rules naming
// a built-in role (which cannot be changed per tenant) or a permission
// outside the contract grant nothing, as Allowed never asks about them.
func (r *RBAC) compile(t *tenantRoles, rule []string) {
	role := rule[0]
	if _, ok := r.builtin[role]; ok {
		return
	}
	t.roles[role] |= r.bit[rule[2]+":"+rule[3]]
}

// forget drops the tenants' cached roles.
func (r *RBAC) forget(ids ...uuid.UUID) {
	r.mu.Lock()
	r.gen.Add(1)
	for _, id := range ids {
		delete(r.tenants, id)
	}
	r.mu.Unlock()
}

// forgetAll drops every cached tenant.
func (r *RBAC) forgetAll() {
	r.mu.Lock()
	r.gen.Add(1)
	clear(r.tenants)
	r.mu.Unlock()
}

// reloadBatch is how many tenants one reload query reads.
const reloadBatch = 500

// Reload reads every cached tenant's policy again from PostgreSQL, a
// batch of tenants per query, and replaces what is cached. A tenant
// invalidated or reloaded meanwhile keeps the newer state.
func (r *RBAC) Reload(ctx context.Context) error {
	r.mu.RLock()
	seen := make(map[uuid.UUID]*tenantRoles, len(r.tenants))
	for id, t := range r.tenants {
		seen[id] = t
	}
	r.mu.RUnlock()
	ids := make([]uuid.UUID, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	for start := 0; start < len(ids); start += reloadBatch {
		batch := ids[start:min(start+reloadBatch, len(ids))]
		loaded, err := r.load(ctx, batch)
		if err != nil {
			return err
		}
		r.mu.Lock()
		for _, id := range batch {
			// Replace only what is still the entry read before the query:
			// a forgotten or newer entry must not be overwritten.
			if cur, ok := r.tenants[id]; ok && cur == seen[id] {
				r.tenants[id] = loaded[id]
			}
		}
		r.mu.Unlock()
	}
	return nil
}

// settleDelay is how long after a (re)connection of the watcher the cache
// is dropped a second time: the connection is made before the SUBSCRIBE is
// sent, so a change announced in between would otherwise be missed.
const settleDelay = time.Second

// Run keeps this replica's policy current until ctx ends: it subscribes the
// policy watcher (retrying while Redis is down), drops every cached
// tenant whenever the subscription (re)connects, since messages published
// meanwhile are lost, and reloads cached tenants every ReloadInterval.
func (r *RBAC) Run(ctx context.Context) {
	reload := time.NewTicker(r.opts.ReloadInterval)
	defer reload.Stop()
	var retry, settle <-chan time.Time
	if r.rdb != nil {
		if err := r.connect(); err != nil {
			r.log.WarnContext(ctx, "rbac: policy watcher unavailable; retrying", "err", err)
			retry = time.After(time.Second)
		}
		defer r.disconnect()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload.C:
			if err := r.Reload(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "rbac: periodic policy reload failed", "err", err)
			}
		case <-r.reconnected:
			r.forgetAll()
			settle = time.After(settleDelay)
		case <-settle:
			r.forgetAll()
			settle = nil
		case <-retry:
			retry = nil
			if err := r.connect(); err != nil {
				retry = time.After(time.Second)
			}
		}
	}
}

// connect creates the policy watcher on clients of its own: the watcher
// closes them when it stops. Every connection the subscribing client
// makes, the first and each after an outage, signals Run.
func (r *RBAC) connect() error {
	base := watcherClientOptions(r.rdb.Options())
	subOpts, pubOpts := base, base
	subOpts.OnConnect = func(context.Context, *redis.Conn) error {
		select {
		case r.reconnected <- struct{}{}:
		default:
		}
		return nil
	}
	sub, pub := redis.NewClient(&subOpts), redis.NewClient(&pubOpts)
	w, err := newPolicyWatcher(sub, pub, r.opts.Channel, r.id, r.onPolicyMessage)
	if err != nil {
		return fmt.Errorf("rbac: start watcher: %w", err)
	}
	r.watcher.Store(w)
	return nil
}

// watcherClientOptions returns options for a client to the same server as
// o, with short timeouts: an announcement must not hold a request for long
// while Redis is away. Only connection settings are copied, since a client
// keeps internal state in its options.
func watcherClientOptions(o *redis.Options) redis.Options {
	return redis.Options{
		Network: o.Network, Addr: o.Addr, ClientName: o.ClientName, Protocol: o.Protocol,
		Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig,
		CredentialsProvider:          o.CredentialsProvider,
		CredentialsProviderContext:   o.CredentialsProviderContext,
		StreamingCredentialsProvider: o.StreamingCredentialsProvider,
		DialTimeout:                  time.Second,
		ReadTimeout:                  time.Second,
		WriteTimeout:                 time.Second,
		MaxRetries:                   2,
		PoolSize:                     2,
	}
}

func (r *RBAC) disconnect() {
	if w := r.watcher.Swap(nil); w != nil {
		if err := w.close(); err != nil {
			r.log.Warn("rbac: closing the policy watcher", "err", err)
		}
	}
}

// closeMessage is what replicas of earlier versions, on Casbin's Redis
// watcher, publish when they stop; it announces no change.
const closeMessage = "Close"

// onPolicyMessage applies another replica's change announcement: it drops
// the tenants the message names, or everything when it names none. This
// replica's own announcements are skipped: it forgot what it changed when
// it committed.
func (r *RBAC) onPolicyMessage(payload string) {
	if payload == closeMessage {
		return
	}
	var msg rediswatcher.MSG
	if err := json.Unmarshal([]byte(payload), &msg); err != nil {
		r.log.Warn("rbac: unreadable policy message; dropping every cached tenant", "err", err)
		r.forgetAll()
		return
	}
	if msg.ID == r.id {
		return
	}
	ids, ok := domainsOf(msg)
	if !ok {
		r.forgetAll()
		return
	}
	r.forget(ids...)
}

// domainsOf returns the tenants a watcher message is about, and false when
// it cannot tell (a full reload, a g rule, an unexpected shape).
func domainsOf(msg rediswatcher.MSG) ([]uuid.UUID, bool) {
	if msg.Sec != "p" || msg.Ptype != "p" {
		return nil, false
	}
	var domains []string
	rule := func(rules ...[]string) {
		for _, rl := range rules {
			if len(rl) > 1 {
				domains = append(domains, rl[1])
			} else {
				domains = append(domains, "")
			}
		}
	}
	switch msg.Method {
	case rediswatcher.UpdateForAddPolicy, rediswatcher.UpdateForRemovePolicy:
		rule(msg.NewRule)
	case rediswatcher.UpdateForAddPolicies, rediswatcher.UpdateForRemovePolicies:
		rule(msg.NewRules...)
	case rediswatcher.UpdateForUpdatePolicy:
		rule(msg.OldRule, msg.NewRule)
	case rediswatcher.UpdateForUpdatePolicies:
		rule(msg.OldRules...)
		rule(msg.NewRules...)
	case rediswatcher.UpdateForRemoveFilteredPolicy:
		i := 1 - msg.FieldIndex
		if i < 0 || i >= len(msg.FieldValues) {
			return nil, false
		}
		domains = append(domains, msg.FieldValues[i])
	default:
		return nil, false
	}
	ids := make([]uuid.UUID, 0, len(domains))
	for _, d := range domains {
		id, err := uuid.Parse(d)
		if err != nil {
			return nil, false
		}
		ids = append(ids, id)
	}
	return ids, len(ids) > 0
}

// announceRetry and announceFor pace and bound the retries of an
// announcement that failed: for about a second after Redis comes back,
// go-redis still refuses to dial, and a late announcement beats waiting for
// the next reload.
const (
	announceRetry = 250 * time.Millisecond
	announceFor   = 10 * time.Second
)

// announce tells the other replicas about a committed change. It does not
// fail the change, which is stored: after a failed send it keeps trying in
// the background for a while, and should that fail too, the other replicas
// pick the change up at their next reload or watcher reconnection.
func (r *RBAC) announce(ctx context.Context, send announcement) {
	if r.rdb == nil {
		return
	}
	if w := r.watcher.Load(); w != nil && send(w) == nil {
		return
	}
	go func() {
		var err error
		for deadline := time.Now().Add(announceFor); time.Now().Before(deadline); {
			time.Sleep(announceRetry)
			w := r.watcher.Load()
			if w == nil {
				err = errors.New("watcher not connected")
				continue
			}
			if err = send(w); err == nil {
				return
			}
		}
		r.log.WarnContext(context.WithoutCancel(ctx), "rbac: could not announce a policy change; other replicas see it at their next reload", "err", err)
	}()
}
