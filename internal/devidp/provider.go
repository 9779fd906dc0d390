// Package devidp is an OpenID Provider for development and tests: it
// publishes discovery, a JWKS and userinfo, signs tokens with RS256 and
// ES256 keys it generates at start, and, for `tenantd dev`, hands out an
// ID token for any email at GET /dev/token. It authenticates nobody: never
// register it for a real tenant.
//
// Tests use it through internal/testenv (OIDCProvider), which adds the
// knobs they need: key rotation, outages, delays and attack tokens.
package devidp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"net/mail"
	"strings"
	"sync"
	"time"
)

// Paths the provider serves, relative to its issuer.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/jwks"
	UserInfoPath  = "/userinfo"
	AuthorizePath = "/authorize" // advertised for conformance, not served
	// TokenPath is the development shortcut GET /dev/token?email=…, served
	// only with Options.ClientID set.
	TokenPath = "/dev/token"
)

// Options configure a Provider.
type Options struct {
	// ClientID, when set, enables GET /dev/token?email=…, which returns an
	// ID token for that email with aud ClientID. Tests leave it empty.
	ClientID string
	// TokenTTL is the lifetime of /dev/token tokens: default one hour.
	TokenTTL time.Duration
}

// Provider is an OpenID Provider serving on its issuer URL (Handler).
type Provider struct {
	issuer string
	opts   Options
	closed chan struct{} // closed by Close, to release delayed handlers
	once   sync.Once

	mu       sync.Mutex
	keys     []signingKey // oldest first; the newest of each alg signs
	userInfo map[string]map[string]any
	requests map[string]int
	down     bool
	delay    time.Duration
}

// New returns a provider whose issuer (the "iss" of its tokens and the base
// of its endpoints) is issuer, e.g. "http://127.0.0.1:8081", with one new
// RS256 key and one new ES256 key. Serve Handler on that address.
func New(issuer string, opts Options) (*Provider, error) {
	keys, err := newSigningKeys()
	if err != nil {
		return nil, err
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = time.Hour
	}
	return &Provider{
		issuer:   strings.TrimSuffix(issuer, "/"),
		opts:     opts,
		closed:   make(chan struct{}),
		keys:     keys,
		userInfo: make(map[string]map[string]any),
		requests: make(map[string]int),
	}, nil
}

// Issuer is the provider's issuer URL.
func (p *Provider) Issuer() string { return p.issuer }

// Handler serves discovery, the JWKS, userinfo and, with a ClientID,
// /dev/token.
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DiscoveryPath, p.serveDiscovery)
	mux.HandleFunc("GET "+JWKSPath, p.serveJWKS)
	mux.HandleFunc("GET "+UserInfoPath, p.serveUserInfo)
	mux.HandleFunc("POST "+UserInfoPath, p.serveUserInfo)
	if p.opts.ClientID != "" {
		mux.HandleFunc("GET "+TokenPath, p.serveToken)
	}
	return p.middleware(mux)
}

// Close releases requests waiting out SetDelay; call it before closing the
// server.
func (p *Provider) Close() { p.once.Do(func() { close(p.closed) }) }

// SetUserInfo makes the userinfo endpoint answer claims for the bearer token
// accessToken; nil claims forget the token. Unknown tokens get 401.
func (p *Provider) SetUserInfo(accessToken string, claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if claims == nil {
		delete(p.userInfo, accessToken)
		return
	}
	p.userInfo[accessToken] = maps.Clone(claims)
}

// Requests reports how many requests for path (e.g. DiscoveryPath or
// JWKSPath) the provider has received, including those it answered 503
// while down.
func (p *Provider) Requests(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[path]
}

// SetDown makes every endpoint answer 503 Service Unavailable while down is
// true.
func (p *Provider) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// SetDelay makes every endpoint wait d before answering. A request whose
// client gives up stops waiting.
func (p *Provider) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Subject is the "sub" /dev/token gives email: stable, opaque, and the same
// for every spelling of the address's case.
func Subject(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return "dev-" + hex.EncodeToString(sum[:8])
}

// middleware counts, delays and, while the provider is down, refuses every
// request before the endpoints see it.
func (p *Provider) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests[r.URL.Path]++
		delay := p.delay
		p.mu.Unlock()
		if delay > 0 {
			timer := time.NewTimer(delay)
			select {
			case <-timer.C:
			case <-r.Context().Done():
				timer.Stop()
				return
			case <-p.closed:
				timer.Stop()
				return
			}
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			http.Error(w, "identity provider is down", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// discovery is the OpenID Provider Metadata document.
type discovery struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	UserInfoEndpoint      string   `json:"userinfo_endpoint"`
	ResponseTypes         []string `json:"response_types_supported"`
	SubjectTypes          []string `json:"subject_types_supported"`
	IDTokenSigningAlgs    []string `json:"id_token_signing_alg_values_supported"`
	Scopes                []string `json:"scopes_supported"`
	Claims                []string `json:"claims_supported"`
}

func (p *Provider) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, discovery{
		Issuer:                p.issuer,
		AuthorizationEndpoint: p.issuer + AuthorizePath,
		JWKSURI:               p.issuer + JWKSPath,
		UserInfoEndpoint:      p.issuer + UserInfoPath,
		ResponseTypes:         []string{"code", "id_token", "code id_token"},
		SubjectTypes:          []string{"public"},
		IDTokenSigningAlgs:    []string{AlgRS256, AlgES256},
		Scopes:                []string{"openid", "email", "profile"},
		Claims:                []string{"iss", "sub", "aud", "exp", "iat", "nbf", "email", "email_verified"},
	})
}

func (p *Provider) serveJWKS(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	keys := append([]signingKey(nil), p.keys...)
	p.mu.Unlock()
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, k := range keys {
		pub, err := k.public()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		set.Keys = append(set.Keys, pub)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, set)
}

func (p *Provider) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="userinfo"`)
		http.Error(w, "bearer token required", http.StatusUnauthorized)
		return
	}
	p.mu.Lock()
	claims, ok := p.userInfo[token]
	p.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "unknown access token", http.StatusUnauthorized)
		return
	}
	writeJSON(w, claims)
}

// serveToken answers GET /dev/token?email=… with an RS256 ID token, as
// text: iss, aud (Options.ClientID), sub (Subject(email)), email,
// email_verified true, iat and exp. Anyone who can reach the provider gets
// a token for any email: that is the point, in development.
func (p *Provider) serveToken(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("email")
	addr, err := mail.ParseAddress(raw)
	if raw == "" || err != nil || addr.Address != raw || !strings.Contains(raw, "@") {
		http.Error(w, "give ?email=someone@example.com", http.StatusBadRequest)
		return
	}
	email := strings.ToLower(raw)
	verified := true
	tok, err := p.Sign(Claims{Subject: Subject(email), Email: email, EmailVerified: &verified,
		Audience: []string{p.opts.ClientID}, ExpiresIn: p.opts.TokenTTL})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// A failed write means the client went away.
	w.Write([]byte(tok + "\n"))
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// A failed write means the client went away; the caller sees that on
	// its side of the connection.
	w.Write(b)
}
