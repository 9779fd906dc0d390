package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestEngines checks that the two benchmarked engines do the same useful
// work, the tenant's own product byte for byte, and that the chain's checks
// are live on the cached path: a benchmark of a chain that let everything
// through, or refused everything, would measure nothing.
func TestEngines(t *testing.T) {
	pop := populate(t, 10)
	env := testenv.Get(t)
	log := discardLogger()
	authn := newApp(appConfig(t), env.OpenDB(t, 4), env.RedisClient(t)).Auth
	chain, baseline := chainEngine(authn, pop.catalog, log), baselineEngine(pop.catalog)
	chainReqs, baselineReqs := requests(pop)
	a, other := pop.members[0], pop.members[1]
	own := pop.catalog[a.id].body

	foreignProduct := a
	foreignProduct.productID = other.productID
	foreignSubdomain := a
	foreignSubdomain.slug = other.slug
	wrongSecret := a
	wrongSecret.key = a.key[:len(a.key)-1] + flip(a.key[len(a.key)-1:])
	noKey := productRequest(a)
	noKey.Header.Del("Authorization")

	tests := []struct {
		name     string
		engine   *gin.Engine
		req      *http.Request
		want     int
		wantBody []byte // checked when not nil
	}{
		{"baseline serves the tenant's product", baseline, baselineReqs[0], http.StatusOK, own},
		{"chain serves the tenant's product", chain, chainReqs[0], http.StatusOK, own},
		{"chain serves it again from the key cache", chain, chainReqs[0], http.StatusOK, own},
		{"chain serves every tenant its own product", chain, chainReqs[len(chainReqs)-1], http.StatusOK, pop.catalog[pop.members[len(pop.members)-1].id].body},
		{"another tenant's product is not found", chain, productRequest(foreignProduct), http.StatusNotFound, nil},
		{"another tenant's subdomain is refused", chain, productRequest(foreignSubdomain), http.StatusForbidden, nil},
		{"a cached prefix with a wrong secret is refused", chain, productRequest(wrongSecret), http.StatusUnauthorized, nil},
		{"a request without a key is refused", chain, noKey, http.StatusUnauthorized, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			tt.engine.ServeHTTP(w, tt.req)
			if w.Code != tt.want {
				t.Fatalf("got status %d %s, want %d", w.Code, w.Body, tt.want)
			}
			if tt.wantBody != nil && !bytes.Equal(w.Body.Bytes(), tt.wantBody) {
				t.Errorf("got body %s, want %s", w.Body, tt.wantBody)
			}
		})
	}
}

// TestRevokedKeyIsRefusedAtOnce checks the premise of the cached figures:
// caching verified keys does not let a revoked key through for the TTL.
func TestRevokedKeyIsRefusedAtOnce(t *testing.T) {
	pop := populate(t, 10)
	env := testenv.Get(t)
	log := discardLogger()
	authn := newApp(appConfig(t), env.OpenDB(t, 4), env.RedisClient(t)).Auth
	e := chainEngine(authn, pop.catalog, log)
	ctx := context.Background()

	m := pop.members[2]
	admin, err := authn.Authenticate(ctx, m.key)
	if err != nil {
		t.Fatalf("authenticate admin key: %v", err)
	}
	k, secret, err := authn.CreateKey(ctx, admin, auth.NewKey{Name: "revoked by the bench test", Roles: []string{"viewer"}})
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	m.key = secret
	serve := func() int {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, productRequest(m))
		return w.Code
	}
	if got := serve(); got != http.StatusOK {
		t.Fatalf("before revoking: got status %d, want 200", got)
	}
	if _, err := authn.RevokeKey(ctx, m.id, k.ID); err != nil {
		t.Fatalf("revoke key: %v", err)
	}
	if got := serve(); got != http.StatusUnauthorized {
		t.Errorf("after revoking: got status %d, want 401", got)
	}
}

// flip returns a different base32 character than c.
func flip(c string) string {
	if c == "a" {
		return "b"
	}
	return "a"
}
