package bench

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/testenv"
)

// sharedIssuers is how many issuers the tenants of the shared-issuer
// variant register between them, as when many tenants use one public
// identity provider, each with a client id (audience) of its own.
const sharedIssuers = 4

// tokenLifetime outlives any benchmark run, so no token expires while
// measured.
const tokenLifetime = 2 * time.Hour

// issuerFront serves OIDC discovery and a JWKS for any number of issuers,
// {URL}/i/{name}. tenantd discovers, fetches and caches each issuer
// separately, as it would distinct providers; only the key material is
// shared (a copy of one testenv provider's JWKS, whose keys sign every
// token), so that 10,000 issuers need not generate 10,000 keys.
type issuerFront struct {
	URL      string
	requests atomic.Int64 // discovery and key-set requests served
}

// newIssuerFront starts a front publishing jwks, closed when b ends.
func newIssuerFront(b *testing.B, jwks []byte) *issuerFront {
	f := &issuerFront{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /i/{name}/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		iss := f.issuer(r.PathValue("name"))
		doc, err := json.Marshal(map[string]any{
			"issuer":                                iss,
			"authorization_endpoint":                iss + "/authorize",
			"jwks_uri":                              iss + "/jwks",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc) // a failed write shows as a failed discovery
	})
	mux.HandleFunc("GET /i/{name}/jwks", func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks) // a failed write shows as a failed key fetch
	})
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *issuerFront) issuer(name string) string { return f.URL + "/i/" + name }

// oidcUser is one tenant's member and the ID tokens it signs in with.
type oidcUser struct {
	tenantID uuid.UUID
	memberID uuid.UUID
	issuer   string
	rs256    string
	es256    string // only in the own-issuer half
}

// oidcPopulation is 2n tenants, each with one member: n that registered an
// issuer of their own, n that share sharedIssuers issuers. keys are the
// public keys of every issuer, for the signature-only baseline.
type oidcPopulation struct {
	own    []oidcUser // tenant i registered issuer own-i
	shared []oidcUser // tenant i registered issuer shared-(i mod sharedIssuers)
	keys   jose.JSONWebKeySet
	idp    *testenv.OIDCProvider // signed the tokens
	front  *issuerFront
}

// newOIDCPopulation creates the tenants with SQL in bulk, for speed: as
// the operator (WithPlatform) and as each tenant (WithTenant), under RLS.
// Every tenant's audience is its slug; every member has the clerk role and
// an ID token signed by a testenv provider.
func newOIDCPopulation(b *testing.B, n int) *oidcPopulation {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	d := testenv.Get(b).OpenDB(b, setupWorkers)
	idp := testenv.NewOIDCProvider(b) // signs the tokens; the front serves its keys
	jwks, err := fetch(ctx, idp.Issuer+"/jwks")
	if err != nil {
		b.Fatal(err)
	}
	p := &oidcPopulation{own: make([]oidcUser, n), shared: make([]oidcUser, n), idp: idp}
	if err := json.Unmarshal(jwks, &p.keys); err != nil {
		b.Fatalf("decode jwks: %v", err)
	}
	front := newIssuerFront(b, jwks)
	p.front = front

	tag := make([]byte, 3) // keeps slugs apart from an earlier run's on a reused database
	if _, err := rand.Read(tag); err != nil {
		b.Fatal(err)
	}
	var ids, slugs, issuers []string
	add := func(users []oidcUser, kind string, issuer func(i int) string) {
		for i := range users {
			users[i] = oidcUser{tenantID: uuid.Must(uuid.NewV7()), memberID: uuid.Must(uuid.NewV7()), issuer: issuer(i)}
			ids = append(ids, users[i].tenantID.String())
			slugs = append(slugs, fmt.Sprintf("oidc%d-%x-%s-%05d", n, tag, kind, i))
			issuers = append(issuers, users[i].issuer)
		}
	}
	add(p.own, "o", func(i int) string { return front.issuer(fmt.Sprintf("own-%d", i)) })
	add(p.shared, "s", func(i int) string { return front.issuer(fmt.Sprintf("shared-%d", i%sharedIssuers)) })

	err = d.WithPlatform(ctx, func(tx *gorm.DB) error {
		return tx.Exec(`
			INSERT INTO tenants (id, slug, name, plan, settings)
			SELECT t.id, t.slug, 'Bench ' || t.slug, 'free',
			       jsonb_build_object('oidc', jsonb_build_object('issuer', t.issuer, 'audience', t.slug))
			FROM unnest(?::uuid[], ?::text[], ?::text[]) AS t(id, slug, issuer)`,
			pgArray(ids), pgArray(slugs), pgArray(issuers)).Error
	})
	if err != nil {
		b.Fatalf("insert tenants: %v", err)
	}
	all := append(append([]oidcUser(nil), p.own...), p.shared...)
	err = parallel(len(all), func(i int) error {
		u := all[i]
		return d.WithTenant(ctx, u.tenantID, func(tx *gorm.DB) error {
			return tx.Exec(`INSERT INTO members (tenant_id, id, issuer, subject, roles, status, created_by)
				VALUES (?, ?, ?, ?, '{clerk}', 'active', 'bench')`, u.tenantID, u.memberID, u.issuer, "user-"+slugs[i]).Error
		})
	})
	if err != nil {
		b.Fatalf("insert members: %v", err)
	}

	// Token fails the benchmark only on an encoding error; from a worker,
	// that stops the worker and marks the benchmark failed.
	sign := func(users []oidcUser, offset int, es256 bool) error {
		return parallel(len(users), func(i int) error {
			c := testenv.Claims{Subject: "user-" + slugs[offset+i], Audience: []string{slugs[offset+i]},
				Issuer: users[i].issuer, ExpiresIn: tokenLifetime}
			users[i].rs256 = idp.Token(b, c)
			if es256 {
				c.Alg = "ES256"
				users[i].es256 = idp.Token(b, c)
			}
			return nil
		})
	}
	if err := sign(p.own, 0, true); err != nil {
		b.Fatal(err)
	}
	if err := sign(p.shared, n, false); err != nil {
		b.Fatal(err)
	}
	b.Logf("created %d tenants with a member each and signed %d tokens in %s", 2*n, 3*n, time.Since(start).Round(time.Millisecond))
	return p
}

// fetch GETs url and returns the body of a 200 answer.
func fetch(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// tokens returns the users' RS256 tokens, or their ES256 ones.
func tokens(users []oidcUser, es256 bool) []string {
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.rs256
		if es256 {
			out[i] = u.es256
		}
	}
	return out
}

// signatureCheck is one token and the public key that verifies it: the
// baseline's work, with the key already found.
type signatureCheck struct {
	raw string
	alg jose.SignatureAlgorithm
	key *jose.JSONWebKey
}

func signatureChecks(b *testing.B, keys jose.JSONWebKeySet, toks []string, alg jose.SignatureAlgorithm) []signatureCheck {
	b.Helper()
	out := make([]signatureCheck, len(toks))
	for i, raw := range toks {
		jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{alg})
		if err != nil {
			b.Fatalf("parse token %d: %v", i, err)
		}
		found := keys.Key(jws.Signatures[0].Header.KeyID)
		if len(found) != 1 {
			b.Fatalf("token %d: %d keys with kid %q, want 1", i, len(found), jws.Signatures[0].Header.KeyID)
		}
		out[i] = signatureCheck{raw: raw, alg: alg, key: &found[0]}
	}
	return out
}

// BenchmarkOIDCSignIn measures, at 10 and 10,000 tenants that registered
// OIDC issuers, auth.Service.Authenticate on members' ID tokens with every
// issuer's discovery and keys cached (warm): the whole sign-in, that is the
// lookup of the tenants that registered the token's issuer, the signature
// and claim checks, the choice of tenant by audience, and the member lookup
// under the tenant's RLS. Tokens of every tenant go round-robin; a sign-in
// that asked an issuer for its discovery document or keys while measured
// fails the benchmark.
//
//   - baseline-RS256, baseline-ES256: the tokens' signatures verified alone
//     with go-jose (ParseSigned and Verify) against the public key, found
//     in advance: the cryptographic floor;
//   - verify-RS256, verify-ES256: the checks auth makes before any database
//     work, with go-oidc's verifier for the token's issuer and the key in
//     memory (no HTTP, no database), so signin minus verify is about what
//     the database lookups, and decoding their results, cost;
//   - signin-RS256, signin-ES256: Authenticate, every tenant having
//     registered an issuer of its own;
//   - signin-RS256-shared-issuers: Authenticate, the tenants sharing
//     sharedIssuers issuers (n/sharedIssuers tenants per issuer), each with
//     an audience of its own.
//
// ns/op of each signin divided by ns/op of its algorithm's baseline is
// reported as x-baseline. Every sign-in is checked to yield its member.
func BenchmarkOIDCSignIn(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			benchmarkOIDCSignIn(b, n)
		})
	}
}

func benchmarkOIDCSignIn(b *testing.B, n int) {
	ctx := context.Background()
	pop := newOIDCPopulation(b, n)
	env := testenv.Get(b)
	cfg := appConfig(b)
	cfg.OIDCAllowInsecureIssuers = true // the issuers are on 127.0.0.1
	svc := newApp(cfg, env.OpenDB(b, setupWorkers), env.RedisClient(b)).Auth

	// Warm every issuer's discovery and keys: sign in every own-issuer
	// member and one member per shared issuer.
	start := time.Now()
	warm := append(append([]oidcUser(nil), pop.own...), pop.shared[:min(n, sharedIssuers)]...)
	err := parallel(len(warm), func(i int) error {
		u := warm[i]
		for _, tok := range []string{u.rs256, u.es256} {
			if tok == "" {
				continue
			}
			p, err := svc.Authenticate(ctx, tok)
			if err != nil {
				return fmt.Errorf("tenant %s: %w", u.tenantID, err)
			}
			if p.TenantID != u.tenantID || p.MemberID != u.memberID {
				return fmt.Errorf("got tenant %s member %s, want %s %s", p.TenantID, p.MemberID, u.tenantID, u.memberID)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("warm up: %v", err)
	}
	b.Logf("discovered %d issuers and signed in %d members in %s", n+min(n, sharedIssuers), len(warm), time.Since(start).Round(time.Millisecond))
	warmRequests := pop.front.requests.Load()
	// A sign-in that accepted anything would measure nothing.
	if _, err := svc.Authenticate(ctx, pop.idp.Tamper(pop.own[0].rs256)); err == nil {
		b.Fatal("a token with a changed subject signed in")
	}

	baseline := func(b *testing.B, checks []signatureCheck) float64 {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c := &checks[i%len(checks)]
			jws, err := jose.ParseSigned(c.raw, []jose.SignatureAlgorithm{c.alg})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := jws.Verify(c.key); err != nil {
				b.Fatalf("token %d: %v", i%len(checks), err)
			}
			i++
		}
		return float64(b.Elapsed().Nanoseconds()) / float64(i)
	}
	verify := func(users []oidcUser, alg jose.SignatureAlgorithm) func(b *testing.B) {
		var key crypto.PublicKey
		for _, k := range pop.keys.Keys {
			if k.Algorithm == string(alg) {
				key = k.Key
			}
		}
		keys := &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{key}}
		toks := tokens(users, alg == jose.ES256)
		vs := make([]*oidc.IDTokenVerifier, len(users))
		for i, u := range users {
			vs[i] = oidc.NewVerifier(u.issuer, keys, &oidc.Config{SkipClientIDCheck: true,
				SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256, oidc.PS256}})
		}
		return func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := i % len(toks)
				if _, err := vs[k].Verify(ctx, toks[k]); err != nil {
					b.Fatalf("token %d: %v", k, err)
				}
				i++
			}
		}
	}
	signIn := func(users []oidcUser, es256 bool, baselineNs *float64) func(b *testing.B) {
		toks := tokens(users, es256)
		return func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := i % len(toks)
				p, err := svc.Authenticate(ctx, toks[k])
				if err != nil || p.MemberID != users[k].memberID {
					b.Fatalf("token %d: got member %s, %v; want %s", k, p.MemberID, err, users[k].memberID)
				}
				i++
			}
			if *baselineNs > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i) / *baselineNs, "x-baseline")
			}
			if got := pop.front.requests.Load(); got != warmRequests {
				b.Errorf("the issuers were asked %d times after warming up: the key caches were not warm", got-warmRequests)
			}
		}
	}

	var rs256Ns, es256Ns float64
	b.Run("baseline-RS256", func(b *testing.B) {
		rs256Ns = baseline(b, signatureChecks(b, pop.keys, tokens(pop.own, false), jose.RS256))
	})
	b.Run("verify-RS256", verify(pop.own, jose.RS256))
	b.Run("signin-RS256", signIn(pop.own, false, &rs256Ns))
	b.Run("signin-RS256-shared-issuers", signIn(pop.shared, false, &rs256Ns))
	b.Run("baseline-ES256", func(b *testing.B) {
		es256Ns = baseline(b, signatureChecks(b, pop.keys, tokens(pop.own, true), jose.ES256))
	})
	b.Run("verify-ES256", verify(pop.own, jose.ES256))
	b.Run("signin-ES256", signIn(pop.own, true, &es256Ns))
}
