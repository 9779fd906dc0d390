package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// OIDCProvider is an OpenID Connect provider served by httptest: discovery,
// JWKS and userinfo. It signs tokens for tests of authentication and can
// rotate its keys, go down or answer slowly, so that tests can see how
// tenantd copes. Only the three endpoints are served; the authorization
// endpoint in the discovery document is there for conformance.
type OIDCProvider struct {
	// Issuer is the server URL (http://127.0.0.1:port), the "iss" of every
	// token unless Claims.Issuer says otherwise.
	Issuer string

	srv    *httptest.Server
	closed chan struct{} // closed before srv, to release delayed handlers

	mu       sync.Mutex
	keys     []signingKey // oldest first; the newest of each alg signs
	userInfo map[string]map[string]any
	requests map[string]int
	down     bool
	delay    time.Duration
}

// Claims describes a token for OIDCProvider.Token. Zero fields take the
// defaults documented on each, so Claims{Subject: "u1", Audience: []string{"tenantd"}}
// is a valid ID token.
type Claims struct {
	Subject       string
	Email         string
	EmailVerified *bool // omitted when nil
	Audience      []string
	Issuer        string // default the provider's Issuer

	// ExpiresIn sets exp to now plus ExpiresIn: default 5 minutes; negative
	// makes a token that has already expired.
	ExpiresIn time.Duration
	NotBefore time.Time // nbf; omitted when zero
	IssuedAt  time.Time // iat; now when zero

	// Alg is "RS256" (default), "ES256", "none" (no signature), or
	// "HS256-public-key": the algorithm-confusion attack, an HS256 HMAC keyed
	// with the PEM of the current RSA public key as published in the JWKS.
	Alg string
	// Type is the JOSE "typ" header, e.g. "JWT" (default) or "at+jwt".
	Type string
	// KeyID overrides the "kid" header, e.g. with one the JWKS does not have.
	KeyID string

	// Extra holds any other claims ("roles", "scope", "client_id", …). It is
	// applied last, so it may also override the claims above.
	Extra map[string]any
}

// Values of Claims.Alg.
const (
	algRS256          = "RS256"
	algES256          = "ES256"
	algNone           = "none"
	algHS256PublicKey = "HS256-public-key"
)

const (
	discoveryPath = "/.well-known/openid-configuration"
	jwksPath      = "/jwks"
	userInfoPath  = "/userinfo"
	authorizePath = "/authorize"
)

// signingKey is one of the provider's private keys, published in the JWKS.
type signingKey struct {
	id  string
	alg string // algRS256 or algES256
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

// NewOIDCProvider starts a provider on 127.0.0.1 with one RS256 key and one
// ES256 key; the server is closed when the test ends.
func NewOIDCProvider(t testing.TB) *OIDCProvider {
	t.Helper()
	keys, err := newSigningKeys()
	if err != nil {
		t.Fatalf("oidc provider: %v", err)
	}
	p := &OIDCProvider{
		closed:   make(chan struct{}),
		keys:     keys,
		userInfo: make(map[string]map[string]any),
		requests: make(map[string]int),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+discoveryPath, p.serveDiscovery)
	mux.HandleFunc("GET "+jwksPath, p.serveJWKS)
	mux.HandleFunc("GET "+userInfoPath, p.serveUserInfo)
	mux.HandleFunc("POST "+userInfoPath, p.serveUserInfo)
	p.srv = httptest.NewServer(p.middleware(mux))
	p.Issuer = p.srv.URL
	t.Cleanup(func() {
		close(p.closed)
		p.srv.Close()
	})
	return p
}

// Token signs c with the provider's current key for c.Alg and returns the
// compact JWS, header {alg, kid, typ}.
func (p *OIDCProvider) Token(t testing.TB, c Claims) string {
	t.Helper()
	tok, err := p.sign(c)
	if err != nil {
		t.Fatalf("oidc token: %v", err)
	}
	return tok
}

// Tamper changes the token's "sub" claim (appending "-tampered", or setting
// "tampered" when there is none) and keeps its header and signature, so the
// result must fail verification. It panics on a token that is not a compact
// JWS, which is a mistake in the test.
func (p *OIDCProvider) Tamper(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		panic(fmt.Sprintf("testenv: Tamper: token has %d parts, want 3", len(parts)))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		panic(fmt.Sprintf("testenv: Tamper: decode payload: %v", err))
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		panic(fmt.Sprintf("testenv: Tamper: parse payload: %v", err))
	}
	if sub, ok := claims["sub"].(string); ok && sub != "" {
		claims["sub"] = sub + "-tampered"
	} else {
		claims["sub"] = "tampered"
	}
	raw, err = json.Marshal(claims)
	if err != nil {
		panic(fmt.Sprintf("testenv: Tamper: encode payload: %v", err))
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

// RotateKeys adds a new RS256 key and a new ES256 key, with new kids, which
// sign from now on; the JWKS serves both the new keys and the old ones.
func (p *OIDCProvider) RotateKeys(t testing.TB) {
	t.Helper()
	if err := p.rotate(false); err != nil {
		t.Fatalf("oidc rotate keys: %v", err)
	}
}

// RotateKeysDroppingOld replaces all keys with a new RS256 key and a new
// ES256 key, so tokens signed before no longer verify against the JWKS.
func (p *OIDCProvider) RotateKeysDroppingOld(t testing.TB) {
	t.Helper()
	if err := p.rotate(true); err != nil {
		t.Fatalf("oidc rotate keys: %v", err)
	}
}

func (p *OIDCProvider) rotate(dropOld bool) error {
	keys, err := newSigningKeys()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if dropOld {
		p.keys = nil
	}
	p.keys = append(p.keys, keys...)
	return nil
}

// SetUserInfo makes the userinfo endpoint answer claims for the bearer token
// accessToken; nil claims forget the token. Unknown tokens get 401.
func (p *OIDCProvider) SetUserInfo(accessToken string, claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if claims == nil {
		delete(p.userInfo, accessToken)
		return
	}
	p.userInfo[accessToken] = maps.Clone(claims)
}

// Requests reports how many requests for path (e.g.
// "/.well-known/openid-configuration" or "/jwks") the provider has received,
// including those it answered 503 while down, so tests can check caching and
// refetch limits.
func (p *OIDCProvider) Requests(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[path]
}

// SetDown makes every endpoint answer 503 Service Unavailable while down is
// true.
func (p *OIDCProvider) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// SetDelay makes every endpoint wait d before answering, to test timeouts. A
// request whose client gives up stops waiting.
func (p *OIDCProvider) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// middleware counts, delays and, while the provider is down, refuses every
// request before the endpoints see it.
func (p *OIDCProvider) middleware(next http.Handler) http.Handler {
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

func (p *OIDCProvider) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, discovery{
		Issuer:                p.Issuer,
		AuthorizationEndpoint: p.Issuer + authorizePath,
		JWKSURI:               p.Issuer + jwksPath,
		UserInfoEndpoint:      p.Issuer + userInfoPath,
		ResponseTypes:         []string{"code", "id_token", "code id_token"},
		SubjectTypes:          []string{"public"},
		IDTokenSigningAlgs:    []string{algRS256, algES256},
		Scopes:                []string{"openid", "email", "profile"},
		Claims:                []string{"iss", "sub", "aud", "exp", "iat", "nbf", "email", "email_verified"},
	})
}

// jwk is a public JSON Web Key (RFC 7517) for RSA or EC P-256.
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

func (p *OIDCProvider) serveJWKS(w http.ResponseWriter, r *http.Request) {
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

func (p *OIDCProvider) serveUserInfo(w http.ResponseWriter, r *http.Request) {
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

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// A failed write means the client went away; the test sees that on its
	// side of the connection.
	w.Write(b)
}

// sign builds and signs the token Token returns.
func (p *OIDCProvider) sign(c Claims) (string, error) {
	alg := c.Alg
	if alg == "" {
		alg = algRS256
	}
	typ := c.Type
	if typ == "" {
		typ = "JWT"
	}
	payload, err := json.Marshal(p.claimSet(c, time.Now()))
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}

	var key signingKey
	switch alg {
	case algRS256, algES256:
		key = p.currentKey(alg)
	case algNone, algHS256PublicKey:
		// The attacks reuse the kid of the RSA key they claim to use.
		key = p.currentKey(algRS256)
	default:
		return "", fmt.Errorf("unknown alg %q, want RS256, ES256, none or HS256-public-key", alg)
	}
	header := struct {
		Alg string `json:"alg"`
		Kid string `json:"kid,omitempty"`
		Typ string `json:"typ"`
	}{Alg: alg, Kid: key.id, Typ: typ}
	if alg == algHS256PublicKey {
		header.Alg = "HS256"
	}
	if c.KeyID != "" {
		header.Kid = c.KeyID
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", fmt.Errorf("encode header: %w", err)
	}
	input := b64(hb) + "." + b64(payload)

	var sig []byte
	switch alg {
	case algNone:
	case algHS256PublicKey:
		secret, err := publicKeyPEM(&key.rsa.PublicKey)
		if err != nil {
			return "", err
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	default:
		if sig, err = key.sign([]byte(input)); err != nil {
			return "", err
		}
	}
	return input + "." + b64(sig), nil
}

// claimSet is the payload of a token for c issued at now.
func (p *OIDCProvider) claimSet(c Claims, now time.Time) map[string]any {
	iss := c.Issuer
	if iss == "" {
		iss = p.Issuer
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = now
	}
	expiresIn := c.ExpiresIn
	if expiresIn == 0 {
		expiresIn = 5 * time.Minute
	}
	m := map[string]any{
		"iss": iss,
		"iat": iat.Unix(),
		"exp": now.Add(expiresIn).Unix(),
	}
	if c.Subject != "" {
		m["sub"] = c.Subject
	}
	if c.Email != "" {
		m["email"] = c.Email
	}
	if c.EmailVerified != nil {
		m["email_verified"] = *c.EmailVerified
	}
	switch len(c.Audience) {
	case 0:
	case 1:
		m["aud"] = c.Audience[0]
	default:
		m["aud"] = c.Audience
	}
	if !c.NotBefore.IsZero() {
		m["nbf"] = c.NotBefore.Unix()
	}
	maps.Copy(m, c.Extra)
	return m
}

// currentKey is the newest key for alg; there is always one.
func (p *OIDCProvider) currentKey(alg string) signingKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.keys) - 1; i >= 0; i-- {
		if p.keys[i].alg == alg {
			return p.keys[i]
		}
	}
	panic("testenv: oidc provider has no " + alg + " key")
}

func newSigningKeys() ([]signingKey, error) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key: %w", err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate EC key: %w", err)
	}
	return []signingKey{
		{id: "rs256-" + randomHex(), alg: algRS256, rsa: rk},
		{id: "es256-" + randomHex(), alg: algES256, ec: ek},
	}, nil
}

func (k signingKey) sign(input []byte) ([]byte, error) {
	digest := sha256.Sum256(input)
	switch k.alg {
	case algRS256:
		sig, err := rsa.SignPKCS1v15(rand.Reader, k.rsa, crypto.SHA256, digest[:])
		if err != nil {
			return nil, fmt.Errorf("sign RS256: %w", err)
		}
		return sig, nil
	case algES256:
		// JWS wants r||s, each 32 bytes (RFC 7518 §3.4), not ASN.1.
		r, s, err := ecdsa.Sign(rand.Reader, k.ec, digest[:])
		if err != nil {
			return nil, fmt.Errorf("sign ES256: %w", err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	}
	return nil, fmt.Errorf("sign: unknown key alg %q", k.alg)
}

func (k signingKey) public() (jwk, error) {
	key := jwk{Use: "sig", Alg: k.alg, Kid: k.id}
	switch k.alg {
	case algRS256:
		key.Kty = "RSA"
		key.N = b64(k.rsa.N.Bytes())
		key.E = b64(big.NewInt(int64(k.rsa.E)).Bytes())
	case algES256:
		point, err := k.ec.PublicKey.Bytes() // 0x04 || x || y
		if err != nil {
			return jwk{}, fmt.Errorf("encode EC key %s: %w", k.id, err)
		}
		key.Kty = "EC"
		key.Crv = "P-256"
		key.X = b64(point[1:33])
		key.Y = b64(point[33:65])
	default:
		return jwk{}, fmt.Errorf("unknown key alg %q", k.alg)
	}
	return key, nil
}

// publicKeyPEM is the PKIX PEM of pub, the HMAC secret an algorithm-confusion
// attacker uses.
func publicKeyPEM(pub *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode RSA public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomHex() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
