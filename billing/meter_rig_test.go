package billing_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

// meterRig is the package's PostgreSQL (runtime role and owner) and Redis.
type meterRig struct {
	env   *testenv.Env
	app   *db.DB
	owner *db.DB
	rdb   *redis.Client
	log   *slog.Logger
}

func newMeterRig(t *testing.T) *meterRig {
	t.Helper()
	gin.SetMode(gin.TestMode)
	env := testenv.Get(t)
	return &meterRig{
		env: env, app: env.OpenDB(t, 16), owner: env.OpenOwnerDB(t), rdb: env.RedisClient(t),
		log: testenv.Logger(),
	}
}

// privateRedis moves the rig to a Redis of the test's own, for tests that
// flush, stop and restart it, and returns that server.
func (r *meterRig) privateRedis(t *testing.T) *testenv.Redis {
	t.Helper()
	rs := testenv.PrivateRedis(t)
	r.rdb = rs.Client(t)
	return rs
}

// testMeter is one meter of a test plan.
type testMeter struct {
	included int64
	hard     bool
}

// plan creates a plan with the given rate limit and meters (the others
// get a soft limit of 0) and returns its name.
func (r *meterRig) plan(t *testing.T, rate, burst int, meters map[string]testMeter) string {
	t.Helper()
	name := "test-" + testenv.RandomHex(4)
	err := r.owner.Unscoped(t.Context()).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`INSERT INTO plans (name, display_name, rate_per_second, burst, monthly_price, currency, sort_order)
			VALUES (?, ?, ?, ?, 0, 'EUR', 99)`, name, "Test "+name, rate, burst).Error; err != nil {
			return err
		}
		for _, m := range billing.Meters {
			terms := meters[m]
			if err := tx.Exec(`INSERT INTO plan_meters (plan, meter, included, unit_price, unit_size, currency, hard_limit)
				VALUES (?, ?, ?, 1, 1, 'EUR', ?)`, name, m, terms.included, terms.hard).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create plan: %v", err)
	}
	return name
}

// usage returns what usage_counters holds for tenantID, per meter and
// currency, over all periods: counts summed, gauges at their maximum.
func (r *meterRig) usage(t *testing.T, tenantID uuid.UUID) map[billing.MeterKey]int64 {
	t.Helper()
	type row struct {
		Meter, Currency string
		Quantity        int64
	}
	rows := testenv.Query[[]row](t, r.app, tenantID, `SELECT meter, currency, quantity FROM usage_counters`)
	out := map[billing.MeterKey]int64{}
	for _, row := range rows {
		k := billing.MeterKey{Meter: row.Meter, Currency: row.Currency}
		if billing.IsGauge(row.Meter) {
			out[k] = max(out[k], row.Quantity)
		} else {
			out[k] += row.Quantity
		}
	}
	return out
}

// requests returns tenantID's api_requests in usage_counters.
func (r *meterRig) requests(t *testing.T, tenantID uuid.UUID) int64 {
	t.Helper()
	return r.usage(t, tenantID)[billing.MeterKey{Meter: billing.MeterAPIRequests}]
}

// wantFlushed fails t unless each tenant's api_requests in PostgreSQL is
// what was served to it (served[i] for tenants[i]) and Redis holds no usage
// key of it; it returns the requests served in all.
func (r *meterRig) wantFlushed(t *testing.T, tenants []uuid.UUID, served []atomic.Int64) int64 {
	t.Helper()
	var total int64
	for i, id := range tenants {
		total += served[i].Load()
		if got, want := r.requests(t, id), served[i].Load(); got != want {
			t.Errorf("tenant %d: got api_requests %d, want %d served", i, got, want)
		}
		if keys := r.redisKeys(t, id); len(keys) > 0 {
			t.Errorf("tenant %d: got usage keys %v in Redis, want none", i, keys)
		}
	}
	return total
}

// redisKeys returns the usage keys Redis holds for tenantID, of any kind
// (usage, usage-flushing).
func (r *meterRig) redisKeys(t *testing.T, tenantID uuid.UUID) []string {
	t.Helper()
	var keys []string
	for _, pattern := range []string{"usage:{" + tenantID.String() + "}:*", "usage-flushing:{" + tenantID.String() + "}:*"} {
		iter := r.rdb.Scan(t.Context(), 0, pattern, 100).Iterator()
		for iter.Next(t.Context()) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Fatalf("scan %s: %v", pattern, err)
		}
	}
	return keys
}

// meterEngine is gin with a stand-in authenticator (tenant and plan from
// headers), then mws, then test routes: GET /v1/things/:id answers 200, or
// 404 for id "missing"; POST /v1/orders answers 201.
func meterEngine(mws ...gin.HandlerFunc) *gin.Engine {
	e := gin.New()
	e.ContextWithFallback = true
	e.Use(apptest.HeaderAuth)
	v1 := e.Group("/v1", mws...)
	v1.GET("/things/:id", func(c *gin.Context) {
		if c.Param("id") == "missing" {
			httpx.Fail(c, fault.NotFound, "no such thing")
			return
		}
		c.JSON(http.StatusOK, gin.H{"id": c.Param("id")})
	})
	v1.POST("/orders", func(c *gin.Context) { c.JSON(http.StatusCreated, gin.H{"status": "pending"}) })
	return e
}

// meterGet sends GET path as tenantID on plan.
func meterGet(e http.Handler, tenantID uuid.UUID, plan, path string) *httptest.ResponseRecorder {
	return meterSend(e, http.MethodGet, tenantID, plan, path)
}

func meterSend(e http.Handler, method string, tenantID uuid.UUID, plan, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(""))
	req.Header.Set(apptest.TenantHeader, tenantID.String())
	req.Header.Set(apptest.PlanHeader, plan)
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	return w
}

// meterProblemCode returns the code of a problem+json response, or "".
func meterProblemCode(w *httptest.ResponseRecorder) string {
	return apptest.Response{Body: w.Body.Bytes()}.Code()
}

// runMeterCounter runs c until the test ends (waiting for its final flush).
func runMeterCounter(t *testing.T, c *billing.Counter) {
	t.Helper()
	testenv.Background(t, c.Run)
}

// rateLimiter lets middleware.RateLimit ask l, as the app's adapter does.
type rateLimiter struct{ l *billing.Limits }

func (r rateLimiter) AllowRequest(ctx context.Context, tenantID uuid.UUID, plan string) (middleware.RateLimitState, bool, error) {
	s, known, err := r.l.AllowRequest(ctx, tenantID, plan)
	return middleware.RateLimitState(s), known, err
}
