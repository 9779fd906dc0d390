package middleware

import (
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// AccessLog writes one structured line per request: request id, tenant,
// principal, route template, status and latency. It never logs headers, so
// credentials cannot leak into logs. Server errors log at level error; a
// request whose client hung up before it was answered logs status 499,
// outcome "client closed request", at level warn: it is no server error.
func AccessLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		// The request's own context: handlers may replace c.Request with
		// one whose context they cancel on their way out.
		reqCtx := c.Request.Context()
		c.Next()
		ctx := c.Request.Context()
		status := httpx.ObservedStatus(reqCtx, c.Writer)
		attrs := []slog.Attr{
			slog.String("request_id", identity.RequestID(ctx)),
			slog.String("method", c.Request.Method),
			slog.String("route", c.FullPath()),
			slog.Int("status", status),
			slog.Duration("latency", time.Since(start)),
			slog.Int("bytes", c.Writer.Size()),
		}
		if p, ok := identity.FromContext(ctx); ok {
			attrs = append(attrs, slog.String("tenant_id", p.TenantID.String()), slog.String("principal", p.Actor()))
		}
		if len(c.Errors) > 0 {
			attrs = append(attrs, slog.String("error", c.Errors.Last().Error()))
		}
		level := slog.LevelInfo
		switch {
		case status == httpx.StatusClientClosedRequest:
			level = slog.LevelWarn
			attrs = append(attrs, slog.String("outcome", "client closed request"))
		case status >= 500:
			level = slog.LevelError
		}
		log.LogAttrs(ctx, level, "request", attrs...)
	}
}
