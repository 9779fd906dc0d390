package middleware

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/audit"
)

// PlatformRecorder appends an operator action to the platform audit log
// (audit.PlatformLog).
type PlatformRecorder interface {
	Record(ctx context.Context, e audit.Entry) (audit.Event, error)
}

// maxAuditedQuery bounds the query string kept in an entry's summary.
const maxAuditedQuery = 1000

// PlatformAudit records every mutating /admin/v1 request in the platform
// audit log once it has been answered: the operator (actor), the method and
// route template (action), the path (resource), the status, and the
// request's id, address and User-Agent. It runs after Operator: requests
// without an operator credential are not operator actions (they are
// logged, throttled and counted as failed authentications). A failure to
// record is logged at ERROR: the action has happened and cannot be undone.
func PlatformAudit(rec PlatformRecorder, log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		switch c.Request.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			c.Next()
			return
		}
		c.Next()
		ctx := audit.WithOrigin(c.Request.Context(), audit.Origin{IP: c.ClientIP(), UserAgent: c.Request.UserAgent()})
		route := c.FullPath()
		if route == "" {
			route = c.Request.URL.EscapedPath()
		}
		summary := map[string]any{}
		if q := c.Request.URL.RawQuery; q != "" {
			summary["query"] = q[:min(len(q), maxAuditedQuery)]
		}
		e := audit.Entry{Action: c.Request.Method + " " + route, Resource: c.Request.URL.EscapedPath(),
			Status: c.Writer.Status(), Summary: summary}
		if _, err := rec.Record(ctx, e); err != nil {
			log.ErrorContext(ctx, "audit: recording an operator action failed; it is not in the platform audit log",
				"action", e.Action, "resource", e.Resource, "status", e.Status, "err", err)
		}
	}
}
