package bench

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// sharedIssuers is how many issuers the tenants of the shared-issuer
// variant register between them, as when many tenants use one public
// identity provider (each with its own client id, the audience).
const sharedIssuers = 4

// tokenLifetime outlives any benchmark run, so no token expires while
// measured.
const tokenLifetime = 2 * time.Hour

// issuerFront serves OIDC discovery for any number of issuers,
// {URL}/i/{name}, all publishing the JWKS of one testenv provider, which
// signs their tokens. Each issuer is still discovered, fetched and cached
// separately by tenantd, as distinct providers would be; only the key
// material is shared, so that 10,000 issuers need not generate 10,000 keys.
type issuerFront struct {
	URL string
	idp *testenv.OIDCProvider
}

func newIssuerFront(b *testing.B, idp *testenv.OIDCProvider) *issuerFront {
	b.Helper()
	f := &issuerFront{idp: idp}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /i/{name}/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		doc, err := json.Marshal(map[string]any{
			"issuer":                                f.issuer(r.PathValue("name")),
			"authorization_endpoint":                idp.Issuer + "/authorize",
			"jwks_uri":                              idp.Issuer + "/jwks",
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
	es256    string // only in the own-issuer population
}

// oidcPopulation is the benchmark's tenants, each with one member, and the
// provider's public keys for the signature-only baseline.
type oidcPopulation struct {
	own    []oidcUser // tenant i registered issuer own-i
	shared []oidcUser // tenant i registered issuer shared-(i mod sharedIssuers)
	keys   jose.JSONWebKeySet
}

// newOIDCPopulation creates 2n tenants through SQL (as an operator and as
// each tenant, under RLS, in bulk for speed): n that each registered an
// issuer of their own, n that share sharedIssuers issuers; every tenant has
// its own audience and one active member with the clerk role. It signs an
// ID token for every member.
func newOIDCPopulation(b *testing.B, d *db.DB, front *issuerFront, n int) *oidcPopulation {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	tag := make([]byte, 3)
	if _, err := rand.Read(tag); err != nil {
		b.Fatal(err)
	}
	p := &oidcPopulation{own: make([]oidcUser, n), shared: make([]oidcUser, n)}
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

	// The slug doubles as the tenant's audience.
	err := d.WithPlatform(ctx, func(tx *gorm.DB) error {
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

	// Token fails the benchmark (from a worker: the worker stops, the
	// benchmark is marked failed) only on an encoding error.
	sign := func(users []oidcUser, offset int, es256 bool) error {
		return parallel(len(users), func(i int) error {
			c := testenv.Claims{Subject: "user-" + slugs[offset+i], Audience: []string{slugs[offset+i]},
				Issuer: users[i].issuer, ExpiresIn: tokenLifetime}
			users[i].rs256 = front.idp.Token(b, c)
			if es256 {
				c.Alg = "ES256"
				users[i].es256 = front.idp.Token(b, c)
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
	if p.keys, err = fetchKeys(ctx, front.idp.Issuer+"/jwks"); err != nil {
		b.Fatal(err)
	}
	b.Logf("created %d tenants with a member each and signed their tokens in %s", 2*n, time.Since(start).Round(time.Millisecond))
	return p
}

// fetchKeys reads a JSON Web Key Set.
func fetchKeys(ctx context.Context, url string) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return set, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return set, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return set, fmt.Errorf("decode jwks: %w", err)
	}
	return set, nil
}

// signatureCheck is one token and the public key that verifies it: the
// baseline's work, with the key already found.
type signatureCheck struct {
	raw string
	alg jose.SignatureAlgorithm
	key *jose.JSONWebKey
}

func signatureChecks(b *testing.B, keys jose.JSONWebKeySet, tokens []string, alg jose.SignatureAlgorithm) []signatureCheck {
	b.Helper()
	out := make([]signatureCheck, len(tokens))
	for i, raw := range tokens {
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
// OIDC issuers, auth.Service.Authenticate on a member's ID token with every
// issuer's key cache warm: the whole sign-in, that is the lookup of the
// tenants that registered the token's issuer, the signature and claim
// checks, the choice of tenant by audience, and the member lookup under the
// tenant's RLS. Tokens of every tenant go round-robin.
//
//   - baseline-RS256, baseline-ES256: the same tokens' signatures verified
//     alone with go-jose (ParseSigned and Verify) against the public key,
//     found in advance: the cryptographic floor;
//   - signin-RS256, signin-ES256: Authenticate, every tenant having
//     registered an issuer of its own;
//   - signin-RS256-shared-issuers: Authenticate, the tenants sharing
//     sharedIssuers issuers (n/sharedIssuers tenants per issuer), each with
//     its own audience.
//
// ns/op of each signin divided by ns/op of the baseline of its algorithm is
// reported as x-baseline.
func BenchmarkOIDCSignIn(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			benchmarkOIDCSignIn(b, n)
		})
	}
}

func benchmarkOIDCSignIn(b *testing.B, n int) {
	ctx := context.Background()
	env := testenv.Get(b)
	d := env.OpenDB(b, setupWorkers)
	front := newIssuerFront(b, testenv.NewOIDCProvider(b))
	pop := newOIDCPopulation(b, d, front, n)
	cfg := appConfig(b)
	cfg.OIDCAllowInsecureIssuers = true // the issuers are on 127.0.0.1
	svc := newApp(cfg, d, env.RedisClient(b)).Auth

	// Warm every issuer's discovery and key cache, and check every sign-in.
	start := time.Now()
	all := append(append([]oidcUser(nil), pop.own...), pop.shared...)
	err := parallel(len(all), func(i int) error {
		for _, tok := range []string{all[i].rs256, all[i].es256} {
			if tok == "" {
				continue
			}
			p, err := svc.Authenticate(ctx, tok)
			if err != nil {
				return fmt.Errorf("tenant %s: %w", all[i].tenantID, err)
			}
			if p.TenantID != all[i].tenantID || p.MemberID != all[i].memberID {
				return fmt.Errorf("got tenant %s member %s, want %s %s", p.TenantID, p.MemberID, all[i].tenantID, all[i].memberID)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatalf("warm up: %v", err)
	}
	b.Logf("discovered %d issuers and signed in %d members in %s", n+min(n, sharedIssuers), len(all), time.Since(start).Round(time.Millisecond))
	// A sign-in that accepted anything would measure nothing.
	if _, err := svc.Authenticate(ctx, front.idp.Tamper(pop.own[0].rs256)); err == nil {
		b.Fatal("a tampered token signed in")
	}

	tokens := func(users []oidcUser, es256 bool) []string {
		out := make([]string, len(users))
		for i, u := range users {
			out[i] = u.rs256
			if es256 {
				out[i] = u.es256
			}
		}
		return out
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
				b.Fatalf("token %d: %v", i, err)
			}
			i++
		}
		return float64(b.Elapsed().Nanoseconds()) / float64(i)
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
		}
	}

	// verify checks a token as auth does before any database work: with
	// go-oidc, a verifier per issuer and the key in memory. The database's
	// share of a sign-in is about signin minus verify.
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
