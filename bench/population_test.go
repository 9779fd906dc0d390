package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/app"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/inventory"
	"github.com/tenantd/tenantd/tenant"
)

// setupWorkers is how many tenants are created, or keys verified, at once.
const setupWorkers = 8

// population is n tenants, each with its initial admin API key and one
// product, created through the tenant and inventory services as the
// operator API would create them.
type population struct {
	members []member
	catalog catalog
}

// member is one tenant of a population.
type member struct {
	id        uuid.UUID
	slug      string
	key       string // the admin API key's secret
	productID uuid.UUID
}

// principal is what authenticating the member's key yields, for the
// baseline, which skips authentication.
func (m member) principal() identity.Principal {
	return identity.Principal{
		Kind: identity.KindAPIKey, TenantID: m.id, TenantSlug: m.slug,
		TenantStatus: string(tenant.Active), Plan: "free", Roles: []string{"admin"},
	}
}

// populations keeps each population for the whole test binary run: 10,000
// tenants take a while to create, and neither sub-benchmarks nor -count
// reruns should create them again.
var populations = struct {
	sync.Mutex
	byN map[int]*population
}{byN: map[int]*population{}}

// populate returns the population of n tenants, creating it on first use
// through the services of a wired app.
func populate(tb testing.TB, n int) *population {
	tb.Helper()
	populations.Lock()
	defer populations.Unlock()
	if p, ok := populations.byN[n]; ok {
		return p
	}
	env := testenv.Get(tb)
	a := newApp(appConfig(tb), env.OpenDB(tb, setupWorkers), env.RedisClient(tb))
	ctx := context.Background()

	start := time.Now()
	p := &population{members: make([]member, n), catalog: make(catalog, n)}
	// Each product's body is what the inventory module answers to GET
	// /v1/products/:id.
	mode := gin.Mode()
	products, _ := apptest.ModuleClient(tb, inventory.NewHandler(a.Inventory).Routes)
	gin.SetMode(mode) // ModuleClient sets test mode; the benchmarks run in TestMain's
	bodies := make([][]byte, n)
	err := parallel(n, func(i int) error {
		slug := fmt.Sprintf("bench%d-%05d", n, i)
		t, key, err := a.Tenants.Create(ctx, tenant.NewTenant{Slug: slug, Name: "Bench " + slug, Plan: "free"})
		if err != nil {
			return err
		}
		prod, err := a.Inventory.Create(ctx, t.ID, inventory.NewProduct{
			SKU: "SKU-1", Name: "Product of " + slug, Price: 1999, Currency: "EUR", Stock: 100,
		})
		if err != nil {
			return err
		}
		resp := products.Send(http.MethodGet, "/v1/products/"+prod.ID.String(), t.ID, "")
		if resp.Status != http.StatusOK {
			return fmt.Errorf("get product of %s: got %d %s, want 200", slug, resp.Status, resp.Body)
		}
		bodies[i] = resp.Body
		p.members[i] = member{id: t.ID, slug: t.Slug, key: key, productID: prod.ID}
		return nil
	})
	if err != nil {
		tb.Fatalf("create %d tenants: %v", n, err)
	}
	for i, m := range p.members {
		p.catalog[m.id] = cachedProduct{id: m.productID.String(), body: bodies[i]}
	}
	tb.Logf("created %d tenants, each with an API key and a product, in %s", n, time.Since(start).Round(time.Millisecond))
	populations.byN[n] = p
	return p
}

// appConfig is the configuration of the apps the benchmarks wire: the
// package's database and Redis, BASE_DOMAIN set, every other setting at its
// default (so API_KEY_CACHE_TTL is the production default).
func appConfig(tb testing.TB) config.Config {
	tb.Helper()
	env := testenv.Get(tb)
	return apptest.Config(tb, env, env.RedisURL, map[string]string{"BASE_DOMAIN": baseDomain})
}

// newApp wires tenantd as main does, with cfg, on d and rdb. Only its
// services are used; its background work (a.Run) is not started.
func newApp(cfg config.Config, d *db.DB, rdb *redis.Client) *app.App {
	a, err := app.New(cfg, d, rdb, discardLogger())
	if err != nil {
		panic(err) // only a malformed built-in policy model
	}
	return a
}

// parallel calls fn for 0…n-1 on setupWorkers goroutines and returns the
// first error.
func parallel(n int, fn func(i int) error) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range setupWorkers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// discardLogger formats like production (JSON) and writes nowhere, so the
// access log's cost is measured without the noise of an output device.
func discardLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}
