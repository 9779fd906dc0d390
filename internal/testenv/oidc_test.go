package testenv

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

const testClientID = "tenantd"

var testAlgs = []string{"RS256", "ES256"}

// verifierFor discovers p through go-oidc, as tenantd does, and returns a
// verifier for testClientID.
func verifierFor(t *testing.T, p *OIDCProvider) (*oidc.Provider, *oidc.IDTokenVerifier) {
	t.Helper()
	provider, err := oidc.NewProvider(t.Context(), p.Issuer)
	if err != nil {
		t.Fatalf("discover %s: %v", p.Issuer, err)
	}
	return provider, provider.Verifier(&oidc.Config{ClientID: testClientID, SupportedSigningAlgs: testAlgs})
}

func ptr[T any](v T) *T { return &v }

func TestOIDCProviderVerify(t *testing.T) {
	t.Parallel()
	p := NewOIDCProvider(t)
	_, verifier := verifierFor(t, p)
	valid := Claims{
		Subject:       "user-1",
		Email:         "clerk@acme.test",
		EmailVerified: ptr(true),
		Audience:      []string{testClientID},
	}
	with := func(change func(*Claims)) Claims {
		c := valid
		change(&c)
		return c
	}

	tests := []struct {
		name    string
		token   func() string
		wantErr string // "" when the token must verify
	}{
		{name: "RS256", token: func() string { return p.Token(t, valid) }},
		{name: "ES256", token: func() string { return p.Token(t, with(func(c *Claims) { c.Alg = "ES256" })) }},
		{name: "one of several audiences", token: func() string {
			return p.Token(t, with(func(c *Claims) { c.Audience = []string{"billing", testClientID} }))
		}},
		{name: "at+jwt with extra claims", token: func() string {
			return p.Token(t, with(func(c *Claims) {
				c.Type = "at+jwt"
				c.Extra = map[string]any{"roles": []string{"clerk"}, "scope": "openid orders"}
			}))
		}},
		{name: "expired", wantErr: "token is expired", token: func() string {
			return p.Token(t, with(func(c *Claims) { c.ExpiresIn = -time.Hour }))
		}},
		{name: "not yet valid", wantErr: "before the nbf", token: func() string {
			return p.Token(t, with(func(c *Claims) { c.NotBefore = time.Now().Add(time.Hour) }))
		}},
		{name: "wrong audience", wantErr: "expected audience", token: func() string {
			return p.Token(t, with(func(c *Claims) { c.Audience = []string{"someone-else"} }))
		}},
		{name: "wrong issuer", wantErr: "issued by a different provider", token: func() string {
			return p.Token(t, with(func(c *Claims) { c.Issuer = "https://idp.evil.test" }))
		}},
		{name: "tampered RS256", wantErr: "failed to verify signature", token: func() string {
			return p.Tamper(p.Token(t, valid))
		}},
		{name: "tampered ES256", wantErr: "failed to verify signature", token: func() string {
			return p.Tamper(p.Token(t, with(func(c *Claims) { c.Alg = "ES256" })))
		}},
		{name: "unknown kid", wantErr: "failed to verify signature", token: func() string {
			return p.Token(t, with(func(c *Claims) { c.KeyID = "no-such-key" }))
		}},
		{name: "alg none", wantErr: `unexpected signature algorithm "none"`, token: func() string {
			return p.Token(t, with(func(c *Claims) { c.Alg = "none" }))
		}},
		{name: "HS256 keyed with the RSA public key", wantErr: `unexpected signature algorithm "HS256"`, token: func() string {
			return p.Token(t, with(func(c *Claims) { c.Alg = "HS256-public-key" }))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := verifier.Verify(t.Context(), tt.token())
			if WantErr(t, "verify", err, tt.wantErr) {
				return
			}
			var claims struct {
				Email         string `json:"email"`
				EmailVerified bool   `json:"email_verified"`
			}
			if err := tok.Claims(&claims); err != nil {
				t.Fatalf("claims: %v", err)
			}
			if tok.Subject != valid.Subject || claims.Email != valid.Email || !claims.EmailVerified {
				t.Errorf("got sub %q email %q verified %v, want %q %q true",
					tok.Subject, claims.Email, claims.EmailVerified, valid.Subject, valid.Email)
			}
		})
	}
}

// TestOIDCProviderAttackTokens shows that the tokens the verifier must refuse
// are the real attacks, refused for their signature alone: their claims are
// valid, and the HS256 one verifies for a library that trusts its header.
func TestOIDCProviderAttackTokens(t *testing.T) {
	t.Parallel()
	p := NewOIDCProvider(t)
	claims := Claims{Subject: "user-1", Audience: []string{testClientID}}
	rsaKey := fetchJWKS(t, p).Keys[0]
	if rsaKey.Algorithm != "RS256" {
		t.Fatalf("first JWKS key: got alg %q, want RS256", rsaKey.Algorithm)
	}
	pub, ok := rsaKey.Key.(*rsa.PublicKey)
	if !ok {
		t.Fatalf("first JWKS key: got %T, want *rsa.PublicKey", rsaKey.Key)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})

	t.Run("none has valid claims and no signature", func(t *testing.T) {
		tok := p.Token(t, Claims{Subject: claims.Subject, Audience: claims.Audience, Alg: "none"})
		if !strings.HasSuffix(tok, ".") {
			t.Errorf("got token %q, want an empty signature", tok)
		}
		provider, err := oidc.NewProvider(t.Context(), p.Issuer)
		if err != nil {
			t.Fatal(err)
		}
		yolo := provider.Verifier(&oidc.Config{ClientID: testClientID, InsecureSkipSignatureCheck: true})
		if _, err := yolo.Verify(t.Context(), tok); err != nil {
			t.Errorf("verify without signature check: got error %v, want none", err)
		}
	})
	t.Run("HS256 is keyed with the public key PEM", func(t *testing.T) {
		tok := p.Token(t, Claims{Subject: claims.Subject, Audience: claims.Audience, Alg: "HS256-public-key"})
		jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.HS256})
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if kid := jws.Signatures[0].Header.KeyID; kid != rsaKey.KeyID {
			t.Errorf("got kid %q, want the RSA key's %q", kid, rsaKey.KeyID)
		}
		if _, err := jws.Verify(secret); err != nil {
			t.Errorf("HMAC with the public key PEM: got error %v, want none", err)
		}
	})
}

func TestOIDCProviderTokenHeaderAndClaims(t *testing.T) {
	t.Parallel()
	p := NewOIDCProvider(t)
	var kids []string
	for _, k := range fetchJWKS(t, p).Keys {
		kids = append(kids, k.KeyID)
	}

	tests := []struct {
		name       string
		claims     Claims
		wantAlg    string
		wantKnown  bool // kid is in the JWKS
		wantKid    string
		wantTyp    string
		wantAud    any
		wantExpIn  time.Duration
		wantNbf    bool
		wantExtras map[string]any
	}{
		{name: "defaults", claims: Claims{Subject: "u"}, wantAlg: "RS256", wantKnown: true, wantTyp: "JWT", wantExpIn: 5 * time.Minute},
		{name: "ES256 at+jwt", claims: Claims{Alg: "ES256", Type: "at+jwt", Audience: []string{"a"}},
			wantAlg: "ES256", wantKnown: true, wantTyp: "at+jwt", wantAud: "a", wantExpIn: 5 * time.Minute},
		{name: "two audiences, expired, nbf", claims: Claims{Audience: []string{"a", "b"}, ExpiresIn: -time.Minute, NotBefore: time.Now()},
			wantAlg: "RS256", wantKnown: true, wantTyp: "JWT", wantAud: []any{"a", "b"}, wantExpIn: -time.Minute, wantNbf: true},
		{name: "kid override", claims: Claims{KeyID: "no-such-key"}, wantAlg: "RS256", wantKid: "no-such-key", wantTyp: "JWT", wantExpIn: 5 * time.Minute},
		{name: "HS256-public-key", claims: Claims{Alg: "HS256-public-key"}, wantAlg: "HS256", wantKnown: true, wantTyp: "JWT", wantExpIn: 5 * time.Minute},
		{name: "extra claims override", claims: Claims{Subject: "u", Extra: map[string]any{"sub": "v", "client_id": "cli", "roles": []string{"clerk"}}},
			wantAlg: "RS256", wantKnown: true, wantTyp: "JWT", wantExpIn: 5 * time.Minute,
			wantExtras: map[string]any{"sub": "v", "client_id": "cli", "roles": []any{"clerk"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			header, payload := decodeToken(t, p.Token(t, tt.claims))
			if header["alg"] != tt.wantAlg || header["typ"] != tt.wantTyp {
				t.Errorf("got alg %v typ %v, want %s %s", header["alg"], header["typ"], tt.wantAlg, tt.wantTyp)
			}
			kid, _ := header["kid"].(string)
			if tt.wantKnown && !slices.Contains(kids, kid) {
				t.Errorf("got kid %q, want one of %v", kid, kids)
			}
			if tt.wantKid != "" && kid != tt.wantKid {
				t.Errorf("got kid %q, want %q", kid, tt.wantKid)
			}
			if payload["iss"] != p.Issuer {
				t.Errorf("got iss %v, want %s", payload["iss"], p.Issuer)
			}
			if got := payload["aud"]; !jsonEqual(got, tt.wantAud) {
				t.Errorf("got aud %#v, want %#v", got, tt.wantAud)
			}
			iat, exp := payload["iat"].(float64), payload["exp"].(float64)
			if got := time.Duration(exp-iat) * time.Second; got != tt.wantExpIn {
				t.Errorf("got exp-iat %v, want %v", got, tt.wantExpIn)
			}
			if _, got := payload["nbf"]; got != tt.wantNbf {
				t.Errorf("got nbf present %v, want %v", got, tt.wantNbf)
			}
			for k, want := range tt.wantExtras {
				if got := payload[k]; !jsonEqual(got, want) {
					t.Errorf("got %s %#v, want %#v", k, got, want)
				}
			}
		})
	}

	t.Run("unknown alg", func(t *testing.T) {
		if _, err := p.sign(Claims{Alg: "PS256"}); err == nil {
			t.Errorf("sign PS256: got no error, want one")
		}
	})
}

func TestOIDCProviderTamper(t *testing.T) {
	t.Parallel()
	p := NewOIDCProvider(t)
	tests := []struct {
		name    string
		subject string
		wantSub string
	}{
		{name: "with sub", subject: "user-1", wantSub: "user-1-tampered"},
		{name: "without sub", subject: "", wantSub: "tampered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := p.Token(t, Claims{Subject: tt.subject, Audience: []string{testClientID}})
			tampered := p.Tamper(tok)
			orig, got := strings.Split(tok, "."), strings.Split(tampered, ".")
			if got[0] != orig[0] || got[2] != orig[2] {
				t.Errorf("got header or signature changed, want both kept")
			}
			_, payload := decodeToken(t, tampered)
			_, origPayload := decodeToken(t, tok)
			if payload["sub"] != tt.wantSub {
				t.Errorf("got sub %v, want %s", payload["sub"], tt.wantSub)
			}
			if payload["exp"] != origPayload["exp"] || payload["aud"] != origPayload["aud"] {
				t.Errorf("got exp %v aud %v, want %v %v", payload["exp"], payload["aud"], origPayload["exp"], origPayload["aud"])
			}
		})
	}
}

func TestOIDCProviderRotateKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		rotate       func(*OIDCProvider, testing.TB)
		wantKeys     int
		wantOldValid bool // for a verifier that has not cached the old keys
	}{
		{name: "keep old", rotate: (*OIDCProvider).RotateKeys, wantKeys: 4, wantOldValid: true},
		{name: "drop old", rotate: (*OIDCProvider).RotateKeysDroppingOld, wantKeys: 2, wantOldValid: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := NewOIDCProvider(t)
			_, verifier := verifierFor(t, p)
			old := map[string]string{}
			for _, alg := range testAlgs {
				old[alg] = p.Token(t, Claims{Subject: "user-1", Audience: []string{testClientID}, Alg: alg})
				if _, err := verifier.Verify(t.Context(), old[alg]); err != nil {
					t.Fatalf("%s before rotation: got error %v, want none", alg, err)
				}
			}
			if got := p.Requests(jwksPath); got != 1 {
				t.Fatalf("JWKS fetches before rotation: got %d, want 1", got)
			}

			tt.rotate(p, t)
			for _, alg := range testAlgs {
				fresh := p.Token(t, Claims{Subject: "user-1", Audience: []string{testClientID}, Alg: alg})
				oldHeader, _ := decodeToken(t, old[alg])
				freshHeader, _ := decodeToken(t, fresh)
				if oldHeader["kid"] == freshHeader["kid"] {
					t.Errorf("%s: got the same kid %v after rotation, want a new one", alg, freshHeader["kid"])
				}
				if _, err := verifier.Verify(t.Context(), fresh); err != nil {
					t.Errorf("%s after rotation: got error %v, want none", alg, err)
				}
			}
			// The first new kid makes go-oidc refetch, which brings both new
			// keys.
			if got := p.Requests(jwksPath); got != 2 {
				t.Errorf("JWKS fetches after rotation: got %d, want 2", got)
			}

			_, cold := verifierFor(t, p) // has not cached the old keys
			for _, alg := range testAlgs {
				_, err := cold.Verify(t.Context(), old[alg])
				if got := err == nil; got != tt.wantOldValid {
					t.Errorf("%s old token with a fresh verifier: got valid %v (%v), want %v", alg, got, err, tt.wantOldValid)
				}
			}
			if got := len(fetchJWKS(t, p).Keys); got != tt.wantKeys {
				t.Errorf("got %d JWKS keys, want %d", got, tt.wantKeys)
			}
		})
	}
}

func TestOIDCProviderUserInfo(t *testing.T) {
	t.Parallel()
	p := NewOIDCProvider(t)
	provider, _ := verifierFor(t, p)
	p.SetUserInfo("at-known", map[string]any{"sub": "user-1", "email": "clerk@acme.test", "email_verified": true})
	p.SetUserInfo("at-forgotten", map[string]any{"sub": "user-2"})
	p.SetUserInfo("at-forgotten", nil)

	tests := []struct {
		name        string
		accessToken string
		wantSubject string
		wantEmail   string
		wantErr     string
	}{
		{name: "known token", accessToken: "at-known", wantSubject: "user-1", wantEmail: "clerk@acme.test"},
		{name: "unknown token", accessToken: "at-unknown", wantErr: "401"},
		{name: "forgotten token", accessToken: "at-forgotten", wantErr: "401"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tt.accessToken, TokenType: "Bearer"})
			info, err := provider.UserInfo(t.Context(), src)
			if WantErr(t, "userinfo", err, tt.wantErr) {
				return
			}
			if info.Subject != tt.wantSubject || info.Email != tt.wantEmail || !info.EmailVerified {
				t.Errorf("got sub %q email %q verified %v, want %q %q true",
					info.Subject, info.Email, info.EmailVerified, tt.wantSubject, tt.wantEmail)
			}
		})
	}
	t.Run("no bearer token", func(t *testing.T) {
		resp, err := http.Get(p.Issuer + userInfoPath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("got status %d, want %d", resp.StatusCode, http.StatusUnauthorized)
		}
	})
}

func TestOIDCProviderDiscovery(t *testing.T) {
	t.Parallel()
	p := NewOIDCProvider(t)
	provider, verifier := verifierFor(t, p)
	var doc struct {
		Issuer   string   `json:"issuer"`
		JWKSURI  string   `json:"jwks_uri"`
		UserInfo string   `json:"userinfo_endpoint"`
		Algs     []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := provider.Claims(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != p.Issuer || doc.JWKSURI != p.Issuer+"/jwks" || doc.UserInfo != p.Issuer+"/userinfo" || !slices.Equal(doc.Algs, testAlgs) {
		t.Errorf("got discovery %+v, want issuer %s, /jwks, /userinfo, %v", doc, p.Issuer, testAlgs)
	}
	if !strings.HasPrefix(p.Issuer, "http://127.0.0.1:") {
		t.Errorf("got issuer %s, want http://127.0.0.1:port", p.Issuer)
	}
	for _, alg := range []string{"RS256", "ES256", "RS256"} {
		tok := p.Token(t, Claims{Subject: "user-1", Audience: []string{testClientID}, Alg: alg})
		if _, err := verifier.Verify(t.Context(), tok); err != nil {
			t.Fatalf("verify %s: %v", alg, err)
		}
	}

	tests := []struct {
		path string
		want int
	}{
		{path: discoveryPath, want: 1},
		{path: jwksPath, want: 1}, // cached after the first token
		{path: userInfoPath, want: 0},
	}
	for _, tt := range tests {
		if got := p.Requests(tt.path); got != tt.want {
			t.Errorf("requests for %s: got %d, want %d", tt.path, got, tt.want)
		}
	}
}

func TestOIDCProviderDown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		down    bool
		wantErr string
	}{
		{name: "up", down: false},
		{name: "down", down: true, wantErr: "503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := NewOIDCProvider(t)
			_, verifier := verifierFor(t, p) // discovered while up; no keys fetched yet
			tok := p.Token(t, Claims{Subject: "user-1", Audience: []string{testClientID}})
			p.SetDown(tt.down)

			_, discoverErr := oidc.NewProvider(t.Context(), p.Issuer)
			_, verifyErr := verifier.Verify(t.Context(), tok)
			for what, err := range map[string]error{"discover": discoverErr, "verify": verifyErr} {
				if tt.wantErr == "" && err != nil {
					t.Errorf("%s: got error %v, want none", what, err)
				}
				if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
					t.Errorf("%s: got error %v, want one containing %q", what, err, tt.wantErr)
				}
			}
			if got := p.Requests(discoveryPath); got != 2 {
				t.Errorf("discovery requests: got %d, want 2 (refused ones count too)", got)
			}

			p.SetDown(false)
			if _, err := oidc.NewProvider(t.Context(), p.Issuer); err != nil {
				t.Errorf("discover after SetDown(false): got error %v, want none", err)
			}
		})
	}
}

func TestOIDCProviderDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		delay       time.Duration
		wantTimeout bool
	}{
		{name: "no delay", delay: 0},
		{name: "short delay", delay: 20 * time.Millisecond},
		{name: "longer than the client waits", delay: 10 * time.Second, wantTimeout: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := NewOIDCProvider(t)
			p.SetDelay(tt.delay)
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			start := time.Now()
			_, err := oidc.NewProvider(ctx, p.Issuer)
			elapsed := time.Since(start)
			if got := errors.Is(err, context.DeadlineExceeded); got != tt.wantTimeout {
				t.Fatalf("discover: got timeout %v (%v), want %v", got, err, tt.wantTimeout)
			}
			if !tt.wantTimeout && err != nil {
				t.Fatalf("discover: got error %v, want none", err)
			}
			if !tt.wantTimeout && elapsed < tt.delay {
				t.Errorf("discover took %v, want at least the delay %v", elapsed, tt.delay)
			}
		})
	}
}

// TestOIDCProviderConcurrent gives the race detector every method at once.
func TestOIDCProviderConcurrent(t *testing.T) {
	t.Parallel()
	p := NewOIDCProvider(t)
	_, verifier := verifierFor(t, p)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			alg := testAlgs[i%2]
			for range 4 {
				// Token and RotateKeys would call t.Fatal off the test
				// goroutine; their unexported halves return errors.
				tok, err := p.sign(Claims{Subject: "user-1", Audience: []string{testClientID}, Alg: alg})
				if err != nil {
					errs <- err
					continue
				}
				if _, err := verifier.Verify(context.Background(), tok); err != nil {
					errs <- err
				}
				p.SetUserInfo(tok, map[string]any{"sub": "user-1"})
				p.SetDelay(0)
				p.SetDown(false)
				p.Requests(jwksPath)
			}
			if i < 2 {
				if err := p.rotate(false); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("sign, rotate or verify concurrently: got error %v, want none", err)
	}
	if got := len(fetchJWKS(t, p).Keys); got != 6 {
		t.Errorf("got %d JWKS keys after two rotations, want 6", got)
	}
}

// fetchJWKS reads the provider's key set through go-jose, which checks each
// key is well formed.
func fetchJWKS(t *testing.T, p *OIDCProvider) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(p.Issuer + jwksPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /jwks: got status %d, want 200", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("decode JWKS: %v", err)
	}
	for _, k := range set.Keys {
		if !k.Valid() || !k.IsPublic() || k.Use != "sig" {
			t.Errorf("JWKS key %s: got valid %v public %v use %q, want true true sig", k.KeyID, k.Valid(), k.IsPublic(), k.Use)
		}
	}
	return set
}

// decodeToken returns a compact JWS's header and payload, unverified.
func decodeToken(t *testing.T, token string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("got %d token parts, want 3", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("decode part %d: %v", i, err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatalf("parse part %d: %v", i, err)
		}
	}
	return header, payload
}

func jsonEqual(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}
