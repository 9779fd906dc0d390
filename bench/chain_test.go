package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

const (
	// baseDomain makes requests name their tenant as production clients
	// do, by subdomain: {slug}.api.bench.test.
	baseDomain = "api.bench.test"
	// productPath is the one route both engines serve.
	productPath = "/v1/products/:id"
)

// catalog is the warm product cache the benchmark handler serves from: each
// tenant's product, already encoded as the API shows it.
type catalog map[uuid.UUID]cachedProduct

// cachedProduct is one tenant's product: its id, as the path carries it, and
// its JSON.
type cachedProduct struct {
	id   string
	body []byte
}

// serve answers GET /v1/products/:id for the principal's tenant from the
// catalog. Both engines run exactly this handler; only what precedes it
// differs.
func (cat catalog) serve(c *gin.Context) {
	p, ok := identity.FromContext(c.Request.Context())
	if !ok {
		c.AbortWithStatus(http.StatusUnauthorized)
		return
	}
	prod, ok := cat[p.TenantID]
	if !ok || prod.id != c.Param("id") {
		c.AbortWithStatus(http.StatusNotFound)
		return
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", prod.body)
}

// baselineEngine is gin with the handler alone: no middleware at all.
func baselineEngine(cat catalog) *gin.Engine {
	e := gin.New()
	e.ContextWithFallback = true
	e.GET(productPath, cat.serve)
	return e
}

// chainEngine puts the handler behind the middleware chain of internal/app,
// in its order: request id, recovery, access log, body limit, then on /v1
// the named tenant, authentication, the tenant check, mws (where
// internal/app puts metering, rate limits and quotas), and the route's
// permission check. Keep it in step with app.New.
func chainEngine(authn *auth.Service, cat catalog, log *slog.Logger, mws ...gin.HandlerFunc) *gin.Engine {
	e := gin.New()
	e.ContextWithFallback = true
	e.Use(middleware.RequestID(), middleware.Recover(log), middleware.AccessLog(log),
		middleware.BodyLimit(httpx.MaxBodyBytes))
	group := append([]gin.HandlerFunc{middleware.TenantName(baseDomain), middleware.Authenticate(authn), middleware.TenantCheck()}, mws...)
	v1 := e.Group("/v1", group...)
	r := httpx.NewRouter(v1, &httpx.Table{}, middleware.Authorize(authn), auth.KnownPermission)
	r.Handle(http.MethodGet, "/products/:id", "products:read", cat.serve)
	return e
}

// productRequest is member m's GET of its own product, naming its tenant by
// subdomain and carrying its API key.
func productRequest(m member) *http.Request {
	r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("http://%s.%s/v1/products/%s", m.slug, baseDomain, m.productID), nil)
	r.Header.Set("Authorization", "Bearer "+m.key)
	return r
}

// requests returns one request per member: as a client sends it (for the
// chain), and already carrying the principal that authentication would
// have put in its context (for the baseline). The requests are only read
// while served, so they are reused across iterations and goroutines.
func requests(pop *population) (chain, baseline []*http.Request) {
	chain = make([]*http.Request, len(pop.members))
	baseline = make([]*http.Request, len(pop.members))
	for i, m := range pop.members {
		chain[i] = productRequest(m)
		baseline[i] = chain[i].WithContext(identity.WithPrincipal(context.Background(), m.principal()))
	}
	return chain, baseline
}

// warmAuth hands out the auth.Service of a freshly wired app whose API-key
// cache holds every key of a population. A service is replaced before its
// entries could expire during a measurement, so the cached figures never
// include a database lookup.
type warmAuth struct {
	cfg      config.Config
	db       *db.DB
	rdb      *redis.Client
	keys     []string
	svc      *auth.Service
	warmedAt time.Time // before the first entry was added
}

// get returns a warm service: the current one while it is young, else a new
// one that has verified every key once.
func (w *warmAuth) get(b *testing.B) *auth.Service {
	b.Helper()
	if w.cfg.APIKeyCacheTTL <= 0 {
		b.Fatalf("API_KEY_CACHE_TTL is %s: there is no cache to warm", w.cfg.APIKeyCacheTTL)
	}
	if w.svc != nil && time.Since(w.warmedAt) < w.cfg.APIKeyCacheTTL/3 {
		return w.svc
	}
	svc := newApp(w.cfg, w.db, w.rdb).Auth
	w.warmedAt = time.Now()
	err := parallel(len(w.keys), func(i int) error {
		_, err := svc.Authenticate(context.Background(), w.keys[i])
		return err
	})
	if err != nil {
		b.Fatalf("warm the API-key cache: %v", err)
	}
	w.svc = svc
	return svc
}

// checkStillWarm fails the benchmark if the measurement may have outlived
// the cache entries, i.e. measured database lookups instead of the chain.
func (w *warmAuth) checkStillWarm(b *testing.B) {
	b.Helper()
	if ttl := w.cfg.APIKeyCacheTTL; time.Since(w.warmedAt) >= ttl {
		b.Fatalf("the measurement ended %s after warming, past the %s API-key cache TTL; use a shorter -benchtime", time.Since(w.warmedAt).Round(time.Millisecond), ttl)
	}
}

// serveEach serves reqs round-robin b.N times (via b.Loop) and fails on any
// status but 200, so a broken chain cannot pass for a fast one.
func serveEach(b *testing.B, e *gin.Engine, reqs []*http.Request) {
	b.Helper()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, reqs[i])
		if w.Code != http.StatusOK {
			b.Fatalf("request %d: got status %d %s, want 200", i, w.Code, w.Body)
		}
		if i++; i == len(reqs) {
			i = 0
		}
	}
}

// serveEachParallel is serveEach on GOMAXPROCS goroutines, each walking the
// requests round-robin from its own starting point.
func serveEachParallel(b *testing.B, e *gin.Engine, reqs []*http.Request) {
	b.Helper()
	b.ReportAllocs()
	var start atomic.Int64
	var failed atomic.Bool
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(start.Add(7919)) % len(reqs)
		for pb.Next() {
			w := httptest.NewRecorder()
			e.ServeHTTP(w, reqs[i])
			if w.Code != http.StatusOK {
				if failed.CompareAndSwap(false, true) {
					b.Errorf("request %d: got status %d %s, want 200", i, w.Code, w.Body)
				}
				return
			}
			if i++; i == len(reqs) {
				i = 0
			}
		}
	})
}

// BenchmarkMiddlewareChain measures, at 10 and 10,000 tenants, GET
// /v1/products/:id answered from a warm cache: baseline is the handler
// alone, chain is the same handler behind the real middleware chain with
// the auth.Service of a wired app, its API-key cache warm; chain-uncached
// is the same with the cache disabled (every request verifies its key in
// PostgreSQL). Requests go round-robin over every tenant, except in the
// -hot10 variants, where all tenants stay provisioned and cached but only
// ten of them send requests. The -parallel variants run on every CPU. Read
// each chain figure against the baseline of the same run.
func BenchmarkMiddlewareChain(b *testing.B) {
	const hot = 10
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			pop := populate(b, n)
			env := testenv.Get(b)
			cfg := appConfig(b)
			d := env.OpenDB(b, setupWorkers)
			rdb := env.RedisClient(b)
			log := discardLogger()
			chainReqs, baselineReqs := requests(pop)
			keys := make([]string, len(pop.members))
			for i, m := range pop.members {
				keys[i] = m.key
			}
			warm := &warmAuth{cfg: cfg, db: d, rdb: rdb, keys: keys}
			uncached := cfg
			uncached.APIKeyCacheTTL = 0

			b.Run("baseline", func(b *testing.B) {
				serveEach(b, baselineEngine(pop.catalog), baselineReqs)
			})
			b.Run("chain", func(b *testing.B) {
				e := chainEngine(warm.get(b), pop.catalog, log)
				serveEach(b, e, chainReqs)
				warm.checkStillWarm(b)
			})
			b.Run("chain-uncached", func(b *testing.B) {
				e := chainEngine(newApp(uncached, d, rdb).Auth, pop.catalog, log)
				serveEach(b, e, chainReqs)
			})
			b.Run("baseline-parallel", func(b *testing.B) {
				serveEachParallel(b, baselineEngine(pop.catalog), baselineReqs)
			})
			b.Run("chain-parallel", func(b *testing.B) {
				e := chainEngine(warm.get(b), pop.catalog, log)
				serveEachParallel(b, e, chainReqs)
				warm.checkStillWarm(b)
			})
			if n <= hot {
				return
			}
			b.Run(fmt.Sprintf("baseline-hot%d", hot), func(b *testing.B) {
				serveEach(b, baselineEngine(pop.catalog), baselineReqs[:hot])
			})
			b.Run(fmt.Sprintf("chain-hot%d", hot), func(b *testing.B) {
				e := chainEngine(warm.get(b), pop.catalog, log)
				serveEach(b, e, chainReqs[:hot])
				warm.checkStillWarm(b)
			})
		})
	}
}
