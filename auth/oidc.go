package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/netguard"
)

// Signing algorithms accepted from identity providers; pinned, so "none"
// and HMAC (algorithm confusion with a public key) never verify.
var signingAlgs = []string{oidc.RS256, oidc.ES256, oidc.PS256}

var joseAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.PS256}

// Errors of token verification, all safe to show a client.
var (
	ErrTokenInvalid        = fault.New(fault.Unauthenticated, "the bearer token is not valid")
	ErrIssuerNotRegistered = fault.New(fault.Unauthenticated, "the token's issuer is not registered by any tenant")
	ErrIssuerUnavailable   = fault.New(fault.IdentityProviderUnavailable, "the identity provider could not be reached; try again shortly")
)

// IssuerPolicy decides which issuer URLs the server may fetch. Registering
// an issuer makes the server call a URL a tenant chose, so by default only
// https on public addresses is allowed (no SSRF into the private network):
// the addresses are those internal/netguard lets through.
type IssuerPolicy struct {
	// AllowInsecure also allows http and loopback or private addresses
	// (OIDC_ALLOW_INSECURE_ISSUERS, for development and tests).
	AllowInsecure bool
}

func (p IssuerPolicy) guard() *netguard.Guard {
	return netguard.New(netguard.Options{AllowPrivate: p.AllowInsecure})
}

// CheckIssuer validates an issuer URL a tenant wants to register.
func (p IssuerPolicy) CheckIssuer(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || len(raw) > 300 {
		return errors.New("must be an absolute URL without credentials, query or fragment, at most 300 characters")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.AllowInsecure:
	default:
		return errors.New("must be an https URL")
	}
	if err := p.guard().CheckHost(u.Hostname()); err != nil {
		return fmt.Errorf("must name a public host: %w", err)
	}
	return nil
}

// httpClient returns the client for all calls to identity providers: short
// timeouts, no redirects, and (unless insecure issuers are allowed) a
// dialer that refuses every special-purpose address of netguard's table,
// so DNS names resolving to internal addresses and DNS rebinding cannot
// reach the private network either.
func (p IssuerPolicy) httpClient(timeout time.Duration) *http.Client {
	return p.guard().Client(timeout)
}

// token is a verified bearer JWT.
type token struct {
	Issuer   string
	Subject  string
	Audience []string
	// Access is true for an RFC 9068 JWT access token (typ at+jwt); false
	// for an ID token.
	Access bool
	Claims map[string]any
	Raw    string
}

// issuers verifies tokens, keeping one verifier per issuer, created lazily
// on first use and only for issuers a tenant registered.
type issuers struct {
	policy IssuerPolicy
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	skew   time.Duration

	mu      sync.Mutex
	entries map[string]*issuerEntry
}

// issuerEntry is one issuer's discovered provider and key set; a failed
// discovery is remembered briefly so a down provider is not hammered.
type issuerEntry struct {
	ready    chan struct{}
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	err      error
	failedAt time.Time
}

const (
	providerTimeout   = 5 * time.Second
	discoveryRetry    = 10 * time.Second
	clockSkew         = 30 * time.Second
	jwksRefetchEvery  = 2 * time.Second
	jwksRefetchBurst  = 3
	maxTokenBytes     = 16 << 10
	maxProviderAnswer = 1 << 20
)

func newIssuers(policy IssuerPolicy, log *slog.Logger) *issuers {
	return &issuers{
		policy: policy, client: policy.httpClient(providerTimeout), log: log,
		now: time.Now, skew: clockSkew, entries: make(map[string]*issuerEntry),
	}
}

// peekIssuer reads the unverified iss claim, to find which verifier to use.
// Nothing else of an unverified token is trusted.
func peekIssuer(raw string) (string, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(raw) > maxTokenBytes {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Iss == "" {
		return "", false
	}
	return c.Iss, true
}

// LooksLikeJWT reports whether a credential has the shape of a compact JWT.
func LooksLikeJWT(raw string) bool {
	_, ok := peekIssuer(raw)
	return ok
}

// entry returns the issuer's verifier, running discovery once.
func (is *issuers) entry(ctx context.Context, issuer string) (*issuerEntry, error) {
	is.mu.Lock()
	e, ok := is.entries[issuer]
	if ok {
		select {
		case <-e.ready:
			if e.err != nil && is.now().Sub(e.failedAt) > discoveryRetry {
				ok = false // try discovery again
			}
		default:
		}
	}
	if !ok {
		e = &issuerEntry{ready: make(chan struct{})}
		is.entries[issuer] = e
		go is.discover(issuer, e)
	}
	is.mu.Unlock()
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

// discover runs discovery detached from any request, bounded by timeouts.
func (is *issuers) discover(issuer string, e *issuerEntry) {
	defer close(e.ready)
	ctx, cancel := context.WithTimeout(oidc.ClientContext(context.Background(), is.client), 2*providerTimeout)
	defer cancel()
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		is.log.Warn("oidc: discovery failed", "issuer", issuer, "err", err)
		e.err, e.failedAt = ErrIssuerUnavailable, is.now()
		return
	}
	var meta struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURL == "" {
		is.log.Warn("oidc: discovery document has no jwks_uri", "issuer", issuer)
		e.err, e.failedAt = ErrIssuerUnavailable, is.now()
		return
	}
	keys := &keySet{url: meta.JWKSURL, client: is.client, log: is.log,
		limiter: rate.NewLimiter(rate.Every(jwksRefetchEvery), jwksRefetchBurst)}
	e.provider = p
	e.verifier = oidc.NewVerifier(issuer, keys, &oidc.Config{
		SkipClientIDCheck:    true, // the audience decides the tenant; checked by the caller
		SupportedSigningAlgs: signingAlgs,
		Now:                  func() time.Time { return is.now().Add(-is.skew) },
	})
}

// verify checks a token's signature (with the issuer's keys), issuer,
// expiry, not-before and issued-at (within the clock skew) and its type.
func (is *issuers) verify(ctx context.Context, issuer, raw string) (token, error) {
	e, err := is.entry(ctx, issuer)
	if err != nil {
		return token{}, err
	}
	idt, err := e.verifier.Verify(ctx, raw)
	if err != nil {
		var expired *oidc.TokenExpiredError
		if errors.As(err, &expired) {
			return token{}, fault.New(fault.Unauthenticated, "the bearer token has expired")
		}
		return token{}, ErrTokenInvalid
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return token{}, ErrTokenInvalid
	}
	now := is.now()
	if nbf, ok := numericDate(claims["nbf"]); ok && nbf.After(now.Add(is.skew)) {
		return token{}, fault.New(fault.Unauthenticated, "the bearer token is not valid yet")
	}
	if iat, ok := numericDate(claims["iat"]); ok && iat.After(now.Add(is.skew)) {
		return token{}, fault.New(fault.Unauthenticated, "the bearer token was issued in the future")
	}
	if idt.Subject == "" {
		return token{}, ErrTokenInvalid
	}
	typ, err := tokenType(raw)
	if err != nil {
		return token{}, ErrTokenInvalid
	}
	return token{Issuer: idt.Issuer, Subject: idt.Subject, Audience: idt.Audience,
		Access: typ == "at+jwt" || typ == "application/at+jwt", Claims: claims, Raw: raw}, nil
}

// tokenType reads the JOSE typ header: JWT (or none) for ID tokens, at+jwt
// for access tokens; anything else (say, a logout token) is refused.
func tokenType(raw string) (string, error) {
	header, err := base64.RawURLEncoding.DecodeString(strings.SplitN(raw, ".", 2)[0])
	if err != nil {
		return "", err
	}
	var h struct {
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		return "", err
	}
	switch t := strings.ToLower(h.Typ); t {
	case "", "jwt", "at+jwt", "application/at+jwt":
		return t, nil
	default:
		return "", fmt.Errorf("token type %q is not accepted", h.Typ)
	}
}

func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// userInfo fetches the verified email of an access token's user from the
// provider's userinfo endpoint.
func (is *issuers) userInfo(ctx context.Context, t token) (email string, verified bool, err error) {
	e, err := is.entry(ctx, t.Issuer)
	if err != nil {
		return "", false, err
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, is.client), providerTimeout)
	defer cancel()
	ui, err := e.provider.UserInfo(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: t.Raw, TokenType: "Bearer"}))
	if err != nil {
		return "", false, fmt.Errorf("userinfo: %w", err)
	}
	if ui.Subject != t.Subject {
		return "", false, errors.New("userinfo: subject differs from the token's")
	}
	return ui.Email, ui.EmailVerified, nil
}

// keySet is an issuer's JSON Web Key Set. An unknown key id triggers a
// refetch (key rotation), at most every jwksRefetchEvery (with a small
// burst), so tokens with made-up key ids cannot make the server hammer the
// provider.
type keySet struct {
	url     string
	client  *http.Client
	log     *slog.Logger
	limiter *rate.Limiter

	fetched atomic.Bool
	mu      sync.RWMutex
	keys    []jose.JSONWebKey
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, joseAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errors.New("malformed jws")
	}
	kid := jws.Signatures[0].Header.KeyID
	payload, known, err := k.verifyCached(jws, kid)
	if known {
		return payload, err
	}
	// The first fetch is free; refetches for unknown key ids are limited.
	if k.fetched.Load() && !k.limiter.Allow() {
		return nil, errors.New("unknown signing key; key refetch is rate-limited")
	}
	if err := k.refresh(ctx); err != nil {
		return nil, err
	}
	payload, _, err = k.verifyCached(jws, kid)
	return payload, err
}

// verifyCached verifies with the cached key of that id; known reports
// whether such a key is cached (then err is final: no refetch).
func (k *keySet) verifyCached(jws *jose.JSONWebSignature, kid string) (payload []byte, known bool, err error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	for i := range k.keys {
		key := &k.keys[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		if p, err := jws.Verify(key); err == nil {
			return p, true, nil
		}
		if kid != "" {
			return nil, true, errors.New("bad signature")
		}
	}
	return nil, false, errors.New("unknown signing key")
}

func (k *keySet) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return fmt.Errorf("jwks request: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderAnswer))
	if err != nil {
		return fmt.Errorf("read jwks: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch jwks: %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("decode jwks: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Use == "" || key.Use == "sig" {
			keys = append(keys, key)
		}
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	k.fetched.Store(true)
	k.log.Info("oidc: fetched signing keys", "jwks", k.url, "keys", len(keys))
	return nil
}
