package testenv

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/devidp"
)

// OIDCProvider is an OpenID Connect provider (internal/devidp) served by
// httptest: discovery, JWKS and userinfo. It signs tokens for tests of
// authentication and can rotate its keys, go down or answer slowly, so that
// tests can see how tenantd copes. Only the three endpoints are served; the
// authorization endpoint in the discovery document is there for
// conformance.
type OIDCProvider struct {
	// Issuer is the server URL (http://127.0.0.1:port), the "iss" of every
	// token unless Claims.Issuer says otherwise.
	Issuer string

	idp *devidp.Provider
}

// Claims describes a token for OIDCProvider.Token (devidp.Claims).
type Claims = devidp.Claims

// Paths the provider serves.
const (
	discoveryPath = devidp.DiscoveryPath
	jwksPath      = devidp.JWKSPath
	userInfoPath  = devidp.UserInfoPath
)

// NewOIDCProvider starts a provider on 127.0.0.1 with one RS256 key and one
// ES256 key; the server is closed when the test ends.
func NewOIDCProvider(t testing.TB) *OIDCProvider {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	idp, err := devidp.New("http://"+srv.Listener.Addr().String(), devidp.Options{})
	if err != nil {
		srv.Close()
		t.Fatalf("oidc provider: %v", err)
	}
	srv.Config.Handler = idp.Handler()
	srv.Start()
	t.Cleanup(func() {
		idp.Close()
		srv.Close()
	})
	return &OIDCProvider{Issuer: idp.Issuer(), idp: idp}
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

func (p *OIDCProvider) sign(c Claims) (string, error) { return p.idp.Sign(c) }

// Tamper changes the token's "sub" claim (appending "-tampered", or setting
// "tampered" when there is none) and keeps its header and signature, so the
// result must fail verification. It panics on a token that is not a compact
// JWS, which is a mistake in the test.
func (p *OIDCProvider) Tamper(token string) string {
	tok, err := devidp.Tamper(token)
	if err != nil {
		panic(fmt.Sprintf("testenv: Tamper: %v", err))
	}
	return tok
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

func (p *OIDCProvider) rotate(dropOld bool) error { return p.idp.RotateKeys(dropOld) }

// SetUserInfo makes the userinfo endpoint answer claims for the bearer token
// accessToken; nil claims forget the token. Unknown tokens get 401.
func (p *OIDCProvider) SetUserInfo(accessToken string, claims map[string]any) {
	p.idp.SetUserInfo(accessToken, claims)
}

// Requests reports how many requests for path (e.g.
// "/.well-known/openid-configuration" or "/jwks") the provider has received,
// including those it answered 503 while down, so tests can check caching and
// refetch limits.
func (p *OIDCProvider) Requests(path string) int { return p.idp.Requests(path) }

// SetDown makes every endpoint answer 503 Service Unavailable while down is
// true.
func (p *OIDCProvider) SetDown(down bool) { p.idp.SetDown(down) }

// SetDelay makes every endpoint wait d before answering, to test timeouts. A
// request whose client gives up stops waiting.
func (p *OIDCProvider) SetDelay(d time.Duration) { p.idp.SetDelay(d) }
