package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/migrations"
)

// health answers liveness and readiness probes.
type health struct {
	log      *slog.Logger
	db       *db.DB
	redis    *redis.Client
	draining atomic.Bool
	stopping chan struct{} // closed when draining starts
}

func (h *health) live(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// ready checks PostgreSQL, Redis and that the schema is at the version this
// binary embeds; it answers 503 naming what failed.
func (h *health) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{
		"postgres":   h.result(ctx, "postgres", h.db.Ping(ctx)),
		"redis":      h.result(ctx, "redis", h.redis.Ping(ctx).Err()),
		"migrations": h.result(ctx, "migrations", h.migrationsCurrent(ctx)),
	}
	status := http.StatusOK
	for _, v := range checks {
		if v != "ok" {
			status = http.StatusServiceUnavailable
		}
	}
	if h.draining.Load() {
		checks["shutdown"] = "draining"
		status = http.StatusServiceUnavailable
	}
	overall := "ready"
	if status != http.StatusOK {
		overall = "not ready"
	}
	c.JSON(status, gin.H{"status": overall, "checks": checks})
}

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
