package middleware

import (
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/httpx"
)

// RequestRecorder records requests for metrics (obs.Metrics is one).
type RequestRecorder interface {
	// StartRequest counts a request in flight until end is called.
	StartRequest() (end func())
	// ObserveRequest records a finished request.
	ObserveRequest(route, method string, status int, latency time.Duration)
}

// Metrics records request count, latency and in-flight requests per route
// template. Unmatched routes are labelled "unmatched". A request whose
// client hung up before it was answered counts as status 499, not as a
// server error.
func Metrics(m RequestRecorder) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		reqCtx := c.Request.Context()
		defer m.StartRequest()()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		m.ObserveRequest(route, c.Request.Method, httpx.ObservedStatus(reqCtx, c.Writer), time.Since(start))
	}
}
