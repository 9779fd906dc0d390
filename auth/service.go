package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
)

// Service issues, verifies and revokes API keys and answers permission
// questions.
type Service struct {
	db    *db.DB
	rdb   *redis.Client // nil: invalidations stay within this process
	cache *expirable.LRU[string, cachedKey]
	// unknown caches key prefixes the database does not know, for
	// unknownKeyTTL; recent holds prefixes issued or announced lately,
	// which are never cached as unknown. unknownMu orders the two.
	unknown   *expirable.LRU[string, struct{}]
	recent    *expirable.LRU[string, struct{}]
	unknownMu sync.Mutex
	// throttle limits failed authentications per client address, and
	// trusted holds the digests of credentials that lately succeeded here
	// (or were issued here), which it never holds back.
	throttle     *throttle
	trusted      *expirable.LRU[[sha256.Size]byte, struct{}]
	failureLimit FailureLimit
	// signIns caches what a token sign-in reads from the database: the
	// tenants of an issuer, and members by (tenant, issuer, subject). Both
	// are dropped with the tenant's credentials (InvalidateTenant).
	registrations *expirable.LRU[string, []registration]
	members       *expirable.LRU[memberKey, Member]
	log           *slog.Logger
	now           func() time.Time
	newKey        func() (key, prefix string) // generateKey
	roles         Roles
	issuers       *issuers
	// tenantIssuers, when set, lets members be added by subject.
	tenantIssuers TenantIssuers
	// platform, when set, admits operator tokens from that issuer.
	platform        *PlatformIssuer
	platformIssuers *issuers
	// failures, when set, is told about failed authentications.
	failures FailureRecorder
	// maxKeyTTL bounds the lifetime of every API key.
	maxKeyTTL time.Duration
}

// FailureRecorder is told about each failed authentication, described
// without its secret; audit.Auditor counts them into bursts.
type FailureRecorder interface {
	AuthFailed(ctx context.Context, f audit.Failure)
}

// WithFailureRecorder reports failed authentications to r.
func WithFailureRecorder(r FailureRecorder) Option { return func(s *Service) { s.failures = r } }

// Roles answers which roles exist in a tenant and what they grant: the
// built-in roles, and the tenant's own roles when an RBAC store is wired.
type Roles interface {
	Allowed(ctx context.Context, p identity.Principal, permission string) bool
	PermissionsOf(ctx context.Context, tenantID uuid.UUID, roles []string) (map[string]bool, error)
	RoleExists(ctx context.Context, tenantID uuid.UUID, role string) (bool, error)
}

// Option configures a Service.
type Option func(*Service)

// WithRoles makes the service ask r about roles instead of knowing only the
// built-in ones.
func WithRoles(r Roles) Option { return func(s *Service) { s.roles = r } }

// WithFailureLimit sets how many failed authentications a client address
// may make (AuthenticateFrom); the zero value keeps DefaultFailureLimit.
func WithFailureLimit(l FailureLimit) Option { return func(s *Service) { s.failureLimit = l } }

// WithMaxKeyTTL bounds how long an API key lives (API_KEY_MAX_TTL); zero
// or less keeps DefaultMaxKeyTTL.
func WithMaxKeyTTL(d time.Duration) Option {
	return func(s *Service) {
		if d > 0 {
			s.maxKeyTTL = d
		}
	}
}

// WithIssuerPolicy sets which OIDC issuer URLs may be fetched.
func WithIssuerPolicy(p IssuerPolicy) Option {
	return func(s *Service) { s.issuers = newIssuers(p, s.log) }
}

// builtinRoles is the Roles of a tenant without custom roles.
type builtinRoles struct{}

func (builtinRoles) Allowed(_ context.Context, p identity.Principal, permission string) bool {
	for _, r := range p.Roles {
		if slices.Contains(BuiltinRoles[r], permission) {
			return true
		}
	}
	return false
}

func (builtinRoles) PermissionsOf(_ context.Context, _ uuid.UUID, roles []string) (map[string]bool, error) {
	return PermissionsOf(roles), nil
}

func (builtinRoles) RoleExists(_ context.Context, _ uuid.UUID, role string) (bool, error) {
	_, ok := BuiltinRoles[role]
	return ok, nil
}

// cachedKey is a verified key: its hash, to check the presented secret, and
// the principal it authenticates.
type cachedKey struct {
	hash      []byte
	principal identity.Principal
	expiresAt *time.Time
}

// invalidationChannel carries "tenant:<id>" and "key:<prefix>" messages so
// that every replica forgets a changed credential at once.
const invalidationChannel = "tenantd:auth:invalidate"

// cacheSize bounds the verified-key cache; past it the least recently used
// key is verified against the database again.
const cacheSize = 100_000

// unknownKeyTTL is how long a key prefix the database does not know is
// answered 401 without asking it again. Creating a key with that prefix
// drops the entry on every replica (a "key:<prefix>" invalidation).
const unknownKeyTTL = 30 * time.Second

// trustedTTL is how long a credential that succeeded is exempt from the
// failed-authentication throttle on this replica.
const trustedTTL = time.Hour

// NewService returns a Service. Verified keys are cached for cacheTTL
// (0 disables the cache); rdb, when not nil, spreads invalidations to the
// other replicas.
func NewService(d *db.DB, rdb *redis.Client, cacheTTL time.Duration, log *slog.Logger, opts ...Option) *Service {
	s := &Service{db: d, rdb: rdb, log: log, now: time.Now, newKey: generateKey, roles: builtinRoles{}, maxKeyTTL: DefaultMaxKeyTTL}
	s.issuers = newIssuers(IssuerPolicy{}, log)
	if cacheTTL > 0 {
		s.cache = expirable.NewLRU[string, cachedKey](cacheSize, nil, cacheTTL)
		s.unknown = expirable.NewLRU[string, struct{}](cacheSize, nil, unknownKeyTTL)
		s.recent = expirable.NewLRU[string, struct{}](cacheSize/10, nil, unknownKeyTTL)
		s.registrations = expirable.NewLRU[string, []registration](cacheSize/10, nil, cacheTTL)
		s.members = expirable.NewLRU[memberKey, Member](cacheSize, nil, cacheTTL)
	}
	s.trusted = expirable.NewLRU[[sha256.Size]byte, struct{}](cacheSize, nil, trustedTTL)
	for _, o := range opts {
		o(s)
	}
	s.throttle = newThrottle(rdb, s.failureLimit, log)
	return s
}

// AuthenticateFrom is Authenticate for a request from client (its IP
// address), with failed authentications limited per address before any
// lookup. A credential that has not succeeded on this replica lately takes
// one failure from the address's budget (FailureLimit, shared by every
// replica through Redis, per replica while Redis is down) and gives it
// back when it is valid or could not be checked (a database or identity
// provider error); an address with no budget left is answered
// rate_limited with a RetryAfter, its credential unread. A credential that
// succeeded here within trustedTTL, or an API key issued here, is never
// held back: a good client is not throttled for sharing its address with
// a bad one.
func (s *Service) AuthenticateFrom(ctx context.Context, client, credential string) (identity.Principal, error) {
	digest := sha256.Sum256([]byte(credential))
	if _, ok := s.trusted.Get(digest); ok {
		p, err := s.Authenticate(ctx, credential)
		if fault.CodeOf(err) == fault.Unauthenticated {
			s.trusted.Remove(digest) // revoked or expired since: throttled from now on
		}
		return p, err
	}
	tk, err := s.throttle.take(ctx, client)
	if err != nil {
		return identity.Principal{}, err
	}
	p, err := s.Authenticate(ctx, credential)
	switch {
	case err == nil:
		s.throttle.giveBack(ctx, tk)
		s.trusted.Add(digest, struct{}{})
	case fault.CodeOf(err) != fault.Unauthenticated:
		s.throttle.giveBack(ctx, tk)
	}
	return p, err
}

// Authenticate verifies a bearer credential and returns its principal.
// Every failure is ErrUnauthenticated, whatever the cause, so a client
// learns nothing about which keys exist.
func (s *Service) Authenticate(ctx context.Context, credential string) (identity.Principal, error) {
	var failed audit.Failure // what is known of the credential, should it fail
	p, err := s.authenticate(ctx, credential, &failed)
	if err != nil && s.failures != nil && fault.CodeOf(err) == fault.Unauthenticated {
		s.failures.AuthFailed(ctx, failed)
	}
	return p, err
}

// authenticate is Authenticate, noting in failed the key prefix and the
// key's tenant as soon as they are known.
func (s *Service) authenticate(ctx context.Context, credential string, failed *audit.Failure) (identity.Principal, error) {
	if LooksLikeJWT(credential) {
		return s.signIn(ctx, credential)
	}
	prefix, ok := parseKey(credential)
	if !ok {
		return identity.Principal{}, ErrUnauthenticated
	}
	failed.KeyPrefix = prefix
	hash := hashKey(credential)
	if s.cache != nil {
		if c, ok := s.cache.Get(prefix); ok {
			failed.TenantID = c.principal.TenantID
			return s.check(c, hash)
		}
	}
	if s.unknown != nil {
		if _, ok := s.unknown.Get(prefix); ok {
			return identity.Principal{}, ErrUnauthenticated
		}
	}
	row, err := lookupKey(ctx, s.db, prefix)
	if errors.Is(err, errNoKey) {
		s.rememberUnknown(prefix)
		return identity.Principal{}, ErrUnauthenticated
	}
	if err != nil {
		return identity.Principal{}, err
	}
	failed.TenantID = row.TenantID
	if row.RevokedAt != nil {
		return identity.Principal{}, ErrUnauthenticated
	}
	c := cachedKey{
		hash:      row.SecretHash,
		expiresAt: row.ExpiresAt,
		principal: identity.Principal{
			Kind: identity.KindAPIKey, TenantID: row.TenantID, TenantSlug: row.TenantSlug,
			TenantStatus: row.TenantStatus, Plan: row.TenantPlan,
			Subject: row.KeyID.String(), KeyID: row.KeyID, Roles: []string(row.Roles),
		},
	}
	// Only a key whose secret matched is cached, so guessing secrets for a
	// known prefix cannot fill or poison the cache.
	p, err := s.check(c, hash)
	if err == nil && s.cache != nil {
		s.cache.Add(prefix, c)
	}
	return p, err
}

// rememberUnknown caches prefix as unknown to the database, unless a key
// with it was issued or announced lately: a lookup that began before that
// key committed must not hide it.
func (s *Service) rememberUnknown(prefix string) {
	if s.unknown == nil {
		return
	}
	s.unknownMu.Lock()
	defer s.unknownMu.Unlock()
	if !s.recent.Contains(prefix) {
		s.unknown.Add(prefix, struct{}{})
	}
}

// keyChanged drops prefix from the caches and keeps it from being cached
// as unknown for unknownKeyTTL: a key with it was created or revoked.
func (s *Service) keyChanged(prefix string) {
	if s.cache == nil {
		return
	}
	s.unknownMu.Lock()
	s.recent.Add(prefix, struct{}{})
	s.unknown.Remove(prefix)
	s.unknownMu.Unlock()
	s.cache.Remove(prefix)
}

func (s *Service) check(c cachedKey, hash []byte) (identity.Principal, error) {
	if subtle.ConstantTimeCompare(c.hash, hash) != 1 {
		return identity.Principal{}, ErrUnauthenticated
	}
	if c.expiresAt != nil && !s.now().Before(*c.expiresAt) {
		return identity.Principal{}, ErrUnauthenticated
	}
	return c.principal, nil
}

// Allowed reports whether the principal's roles grant permission in its
// tenant.
func (s *Service) Allowed(ctx context.Context, p identity.Principal, permission string) bool {
	return s.roles.Allowed(ctx, p, permission)
}

// checkGrant refuses roles that do not exist in the tenant (422 naming
// roles) or that grant a permission the actor lacks (403 naming it): no
// privilege escalation through keys or members.
func (s *Service) checkGrant(ctx context.Context, actor identity.Principal, what string, roles []string) error {
	for _, r := range roles {
		ok, err := s.roles.RoleExists(ctx, actor.TenantID, r)
		if err != nil {
			return err
		}
		if !ok {
			return fault.Invalid(fault.Field("roles", "unknown role "+quote(r)))
		}
	}
	return s.checkHolds(ctx, actor, what, roles)
}

// checkHolds refuses, naming what is missing, when the roles grant a
// permission the actor lacks.
func (s *Service) checkHolds(ctx context.Context, actor identity.Principal, what string, roles []string) error {
	missing, err := s.MissingPermissions(ctx, actor, roles)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return Lacking(what, missing)
	}
	return nil
}

// MissingPermissions returns, in the contract's order, the permissions the
// roles grant in the actor's tenant that the actor's own roles do not.
// Names of roles that do not exist grant nothing.
func (s *Service) MissingPermissions(ctx context.Context, actor identity.Principal, roles []string) ([]string, error) {
	have, err := s.roles.PermissionsOf(ctx, actor.TenantID, actor.Roles)
	if err != nil {
		return nil, err
	}
	want, err := s.roles.PermissionsOf(ctx, actor.TenantID, roles)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, p := range Permissions {
		if want[p] && !have[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// RoleExists reports whether role is built in or one of the tenant's own.
func (s *Service) RoleExists(ctx context.Context, tenantID uuid.UUID, role string) (bool, error) {
	return s.roles.RoleExists(ctx, tenantID, role)
}

// IssueKey creates a key inside tx, a transaction already scoped to
// tenantID, expiring at the latest after the maximum key lifetime. It
// returns the key and its secret, which is never stored.
func (s *Service) IssueKey(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID, n NewKey, createdBy string) (Key, string, error) {
	now := s.now()
	if err := n.Validate(now); err != nil {
		return Key{}, "", err
	}
	if err := n.Bound(now.Add(s.maxKeyTTL), s.ttlReason()); err != nil {
		return Key{}, "", err
	}
	k, secret, err := s.insertKey(ctx, tx, tenantID, n, createdBy)
	if err == nil {
		// The caller commits tx; announcing the prefix before that is
		// harmless (it only keeps replicas from caching it as unknown),
		// and done aside so that a slow Redis does not hold tx open.
		go s.announceDetached(ctx, "key:"+k.Prefix)
	}
	return k, secret, err
}

// announceDetached publishes msg to the other replicas, outliving ctx by
// at most a few seconds.
func (s *Service) announceDetached(ctx context.Context, msg string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.invalidate(ctx, msg)
}

func (s *Service) ttlReason() string {
	return "an API key lives at most " + days(s.maxKeyTTL) + " (API_KEY_MAX_TTL)"
}

// insertKey stores a validated, bounded key and records it in the audit
// trail.
func (s *Service) insertKey(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID, n NewKey, createdBy string) (Key, string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Key{}, "", fmt.Errorf("new key id: %w", err)
	}
	secret, prefix := s.newKey()
	r := keyRow{
		TenantID: tenantID, ID: id, Name: n.Name, Prefix: prefix,
		SecretHash: hashKey(secret), Roles: db.TextArray(n.Roles), CreatedBy: createdBy,
		ExpiresAt: utc(n.ExpiresAt), CreatedAt: s.now().UTC().Truncate(time.Microsecond),
	}
	if err := insertKey(tx.WithContext(ctx), &r); err != nil {
		return Key{}, "", err
	}
	// This replica never caches the new prefix as unknown and trusts the
	// key at once; the other replicas hear of it after the commit.
	s.keyChanged(prefix)
	s.trusted.Add(sha256.Sum256([]byte(secret)), struct{}{})
	k := r.toModel()
	if err := audit.Record(ctx, tx, tenantID, audit.Entry{Action: "api_key.created", Resource: "api_key:" + k.ID.String(),
		Summary: map[string]any{"after": map[string]any{"name": k.Name, "prefix": k.Prefix, "roles": k.Roles, "expires_at": k.ExpiresAt}}}); err != nil {
		return Key{}, "", err
	}
	return k, secret, nil
}

// IssueAdminKey mints a new tenant's first key, with role admin, inside the
// tenant-creation transaction tx.
func (s *Service) IssueAdminKey(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID) (string, error) {
	_, secret, err := s.IssueKey(ctx, tx, tenantID, NewKey{Name: "initial admin key", Roles: []string{"admin"}}, "operator")
	return secret, err
}

// CreateKey creates a key in the acting principal's tenant. The key may not
// grant a permission the principal lacks, and it expires at the latest
// after the maximum key lifetime, and never after the key that creates it.
func (s *Service) CreateKey(ctx context.Context, actor identity.Principal, n NewKey) (k Key, secret string, err error) {
	now := s.now()
	if err := n.Validate(now); err != nil {
		return Key{}, "", err
	}
	if err := s.checkGrant(ctx, actor, "creating an API key", n.Roles); err != nil {
		return Key{}, "", err
	}
	err = s.db.WithTenant(ctx, actor.TenantID, func(tx *gorm.DB) error {
		notAfter, why := now.Add(s.maxKeyTTL), s.ttlReason()
		if actor.Kind == identity.KindAPIKey {
			creator, err := findKey(tx, actor.KeyID)
			if err != nil && !errors.Is(err, ErrKeyNotFound) {
				return err
			}
			if err == nil && creator.ExpiresAt != nil && creator.ExpiresAt.Before(notAfter) {
				notAfter, why = *creator.ExpiresAt, "a key never outlives the key that creates it"
			}
		}
		if err := n.Bound(notAfter, why); err != nil {
			return err
		}
		k, secret, err = s.insertKey(ctx, tx, actor.TenantID, n, actor.Actor())
		return err
	})
	if err != nil {
		return Key{}, "", err
	}
	// Every replica forgets the prefix, should one have cached it as
	// unknown (only by guessing 80 random bits before its creation).
	s.invalidate(ctx, "key:"+k.Prefix)
	return k, secret, nil
}

// ListKeys returns up to limit+1 keys of the tenant after the given id.
func (s *Service) ListKeys(ctx context.Context, tenantID, after uuid.UUID, limit int) (keys []Key, err error) {
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		keys, err = listKeys(tx, after, limit)
		return err
	})
	return keys, err
}

// RevokeKeyAs revokes a key of the actor's tenant. The actor must hold
// every permission of the key's roles, and the tenant's last admin is
// never revoked (ErrLastAdmin). The key stops working on every replica at
// once (and, should the invalidation message be lost, within the cache
// TTL).
func (s *Service) RevokeKeyAs(ctx context.Context, actor identity.Principal, id uuid.UUID) (Key, error) {
	return s.revokeKey(ctx, actor.TenantID, &actor, id)
}

// RevokeKey revokes a key of the tenant for a trusted caller without a
// principal (the platform, tests): no permission is checked, but the last
// admin is still kept.
func (s *Service) RevokeKey(ctx context.Context, tenantID, id uuid.UUID) (Key, error) {
	return s.revokeKey(ctx, tenantID, nil, id)
}

func (s *Service) revokeKey(ctx context.Context, tenantID uuid.UUID, actor *identity.Principal, id uuid.UUID) (k Key, err error) {
	err = s.actOn(ctx, tenantID, actor, keyTarget(id), "revoking an API key",
		func(credential) bool { return true },
		func(tx *gorm.DB, _ credential) error {
			if k, err = revokeKey(tx, id); err != nil {
				return err
			}
			return audit.Record(ctx, tx, tenantID, audit.Entry{Action: "api_key.revoked", Resource: "api_key:" + k.ID.String(),
				Summary: map[string]any{"after": map[string]any{"name": k.Name, "prefix": k.Prefix, "roles": k.Roles, "revoked_at": k.RevokedAt}}})
		})
	if err != nil {
		return Key{}, err
	}
	s.invalidate(ctx, "key:"+k.Prefix)
	return k, nil
}

// InvalidateTenant forgets every cached credential of the tenant, on every
// replica: a suspension or plan change applies to the next request.
func (s *Service) InvalidateTenant(ctx context.Context, tenantID uuid.UUID) {
	s.invalidate(ctx, "tenant:"+tenantID.String())
}

func (s *Service) invalidate(ctx context.Context, msg string) {
	s.forget(msg)
	if s.rdb == nil {
		return
	}
	if err := s.rdb.Publish(ctx, invalidationChannel, msg).Err(); err != nil {
		s.log.WarnContext(ctx, "auth: could not publish credential invalidation; other replicas see it within the cache TTL", "err", err)
	}
}

func (s *Service) forget(msg string) {
	if s.cache == nil {
		return
	}
	kind, value, _ := strings.Cut(msg, ":")
	switch kind {
	case "key":
		s.keyChanged(value)
	case "tenant":
		for _, prefix := range s.cache.Keys() {
			if c, ok := s.cache.Peek(prefix); ok && c.principal.TenantID.String() == value {
				s.cache.Remove(prefix)
			}
		}
		// A tenant's OIDC settings or status may have changed: which
		// tenants an issuer serves is read again.
		s.registrations.Purge()
		for _, k := range s.members.Keys() {
			if k.tenant.String() == value {
				s.members.Remove(k)
			}
		}
	}
}

// ListenForInvalidations applies other replicas' invalidations until ctx
// ends. Messages published while the subscription is down are lost, so on
// every (re)subscription the whole cache is dropped; the TTL bounds
// staleness meanwhile.
func (s *Service) ListenForInvalidations(ctx context.Context) {
	if s.rdb == nil || s.cache == nil {
		return
	}
	sub := s.rdb.Subscribe(ctx, invalidationChannel)
	// A blocking Receive does not watch ctx: closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { sub.Close() })
	defer stop()
	defer sub.Close()
	for {
		msg, err := sub.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.WarnContext(ctx, "auth: credential invalidation subscription interrupted; resubscribing", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			s.cache.Purge()
			s.unknown.Purge()
			s.registrations.Purge()
			s.members.Purge()
		case *redis.Message:
			s.forget(m.Payload)
		}
	}
}
