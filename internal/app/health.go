package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/migrations"
)

// checkTimeout bounds each readiness check; the checks run concurrently.
const checkTimeout = 2 * time.Second

// health answers liveness and readiness probes. Readiness means "send me
// traffic": PostgreSQL answers, the schema is current and the process is not
// draining. Redis is needed for rate limits, the API key cache and messages
// between replicas, but requests are served without it unless rate limits
// fail closed (RATE_LIMIT_FAIL=closed), so an unreachable Redis makes the
// replica "degraded" (200), or not ready (503) only when it fails closed.
type health struct {
	log   *slog.Logger
	db    *db.DB
	redis *redis.Client
	// failOpen is config.RateLimitFailOpen: requests are served while Redis
	// is down. The zero value treats Redis as required.
	failOpen bool
	draining atomic.Bool
	stopping chan struct{} // closed when draining starts
}

// newHealth returns the probes of a server over d and rdb, and exports
// tenantd_dependency_up for PostgreSQL and Redis on m (when not nil).
// failOpen is config.RateLimitFailOpen.
func newHealth(log *slog.Logger, d *db.DB, rdb *redis.Client, failOpen bool, m *obs.Metrics) *health {
	h := &health{log: log, db: d, redis: rdb, failOpen: failOpen, stopping: make(chan struct{})}
	if m != nil {
		m.CollectDependencies(map[string]func(context.Context) error{
			"postgres": h.db.Ping,
			"redis":    h.pingRedis,
		})
	}
	return h
}

func (h *health) live(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// ready checks PostgreSQL, Redis and that the schema is at the version this
// binary embeds. It answers 200 "ready", 200 "degraded" when only Redis
// failed and requests are served without it, and otherwise 503 "not ready";
// the body names each check's outcome.
func (h *health) ready(c *gin.Context) {
	ctx := c.Request.Context()
	checks := h.run(ctx, map[string]func(context.Context) error{
		"postgres":   h.db.Ping,
		"redis":      h.pingRedis,
		"migrations": h.migrationsCurrent,
	})
	status, overall := http.StatusOK, "ready"
	for name, result := range checks {
		switch {
		case result == "ok":
		case name == "redis" && h.failOpen:
			if overall == "ready" {
				overall = "degraded"
			}
		default:
			status, overall = http.StatusServiceUnavailable, "not ready"
		}
	}
	if h.draining.Load() {
		checks["shutdown"] = "draining"
		status, overall = http.StatusServiceUnavailable, "not ready"
	}
	c.JSON(status, gin.H{"status": overall, "checks": checks})
}

// run runs the checks concurrently, each under checkTimeout, and names
// their outcomes ("ok" or "failing").
func (h *health) run(ctx context.Context, checks map[string]func(context.Context) error) map[string]string {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = make(map[string]string, len(checks))
	)
	for name, check := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			result := h.result(cctx, name, check(cctx))
			mu.Lock()
			out[name] = result
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (h *health) pingRedis(ctx context.Context) error { return h.redis.Ping(ctx).Err() }

func (h *health) migrationsCurrent(ctx context.Context) error {
	latest, err := db.LatestVersion(migrations.Files)
	if err != nil {
		return err
	}
	v, dirty, err := h.db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if dirty {
		return fmt.Errorf("migration %d is dirty", v)
	}
	// A newer schema is fine: in a rolling deploy migrations run first and
	// are additive, so the replicas still on the old binary stay ready.
	if v < latest {
		return fmt.Errorf("schema at %d, binary expects %d: run tenantd migrate up", v, latest)
	}
	return nil
}

// result names a check's outcome without internals (the route is
// unauthenticated); the cause goes to the log.
func (h *health) result(ctx context.Context, check string, err error) string {
	if err == nil {
		return "ok"
	}
	h.log.WarnContext(ctx, "readiness check failed", "check", check, "err", err)
	return "failing"
}
