package devidp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tenantd/tenantd/internal/devidp"
)

// serve starts p's handler on the address p was made for.
func serve(t *testing.T, opts devidp.Options) *devidp.Provider {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	p, err := devidp.New("http://"+srv.Listener.Addr().String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(func() { p.Close(); srv.Close() })
	return p
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestDevToken gets ID tokens from /dev/token and verifies them as tenantd
// does (go-oidc, discovery and JWKS), for the client id the provider was
// given.
func TestDevToken(t *testing.T) {
	p := serve(t, devidp.Options{ClientID: "tenantd-dev"})
	provider, err := oidc.NewProvider(t.Context(), p.Issuer())
	if err != nil {
		t.Fatalf("discover %s: %v", p.Issuer(), err)
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: "tenantd-dev", SupportedSigningAlgs: []string{"RS256", "ES256"}})

	tests := []struct {
		query      string
		wantStatus int
		wantEmail  string // of a valid token
	}{
		{"email=alice@example.com", 200, "alice@example.com"},
		{"email=Bob.Smith@Example.COM", 200, "bob.smith@example.com"},
		{"email=", 400, ""},
		{"", 400, ""},
		{"email=not-an-email", 400, ""},
		{"email=Alice%20%3Calice@example.com%3E", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			status, body := get(t, p.Issuer()+devidp.TokenPath+"?"+tt.query)
			if status != tt.wantStatus {
				t.Fatalf("got %d %q, want %d", status, body, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			tok, err := verifier.Verify(t.Context(), strings.TrimSpace(body))
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			var claims struct {
				Email         string `json:"email"`
				EmailVerified bool   `json:"email_verified"`
			}
			if err := tok.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if tok.Issuer != p.Issuer() || tok.Subject != devidp.Subject(tt.wantEmail) ||
				claims.Email != tt.wantEmail || !claims.EmailVerified {
				t.Errorf("got iss %q sub %q email %q verified %v, want %q %q %q true",
					tok.Issuer, tok.Subject, claims.Email, claims.EmailVerified, p.Issuer(), devidp.Subject(tt.wantEmail), tt.wantEmail)
			}
			if d := tok.Expiry.Sub(tok.IssuedAt); d.Hours() != 1 {
				t.Errorf("got a token valid for %s, want 1h", d)
			}
		})
	}
}

// TestDevTokenOnlyWithClientID: a provider made without a client id (as
// the tests' OIDCProvider) has no /dev/token.
func TestDevTokenOnlyWithClientID(t *testing.T) {
	p := serve(t, devidp.Options{})
	if status, _ := get(t, p.Issuer()+devidp.TokenPath+"?email=alice@example.com"); status != http.StatusNotFound {
		t.Errorf("got %d, want 404", status)
	}
}

// TestSubject: stable per address whatever its case, different per address.
func TestSubject(t *testing.T) {
	a, b := devidp.Subject("alice@example.com"), devidp.Subject("ALICE@example.com")
	if a != b {
		t.Errorf("got %q and %q for one address, want the same", a, b)
	}
	if c := devidp.Subject("eve@example.com"); c == a {
		t.Errorf("got %q for two addresses, want different subjects", c)
	}
	if want := "dev-ff8d9819fc0e12bf"; a != want { // docs/walkthrough/identity.md shows it
		t.Errorf("got %q, want %q", a, want)
	}
}
