package app

import (
	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/middleware"
)

// chain installs the request pipeline on e, top to bottom, one step a
// line, and returns the router of the tenant routes (/v1). gin runs it in
// three stages: the engine's steps run for every request (health, metrics
// and the API documents included), the /v1 group's for tenant requests,
// and each route's, which httpx.Router adds when a module registers the
// route with its permission. Call it before registering any route.
func (a *App) chain(e *gin.Engine, tracing bool, baseDomain string) *httpx.Router {
	if tracing {
		e.Use(otelgin.Middleware("tenantd")) // trace: a span per request
	}
	e.Use(middleware.RequestID())                   // request id, echoed and in every log line
	e.Use(middleware.Origins(a.Audit))              // client address and User-Agent, for the audit trail
	e.Use(middleware.Metrics(a.Metrics))            // request count, latency and in-flight requests
	e.Use(middleware.Recover(a.log))                // recover: a panic is a 500 that reveals nothing
	e.Use(middleware.AccessLog(a.log))              // log: one line per request
	e.Use(middleware.BodyLimit(httpx.MaxBodyBytes)) // body limit: 413

	// Every authenticated request is metered, refused ones included, except
	// those the rate limit or a quota refused.
	v1 := e.Group("/v1")
	v1.Use(middleware.TenantName(baseDomain))          // tenant: the one the request names (X-Tenant or subdomain)
	v1.Use(middleware.Authenticate(a.Auth))            // authn: the credential's principal
	v1.Use(middleware.TenantCheck())                   // tenant status: named tenant is the credential's, not suspended
	v1.Use(middleware.Audit(a.Audit))                  // audit entry of each state-changing request
	v1.Use(middleware.CountRejections(a.Metrics))      // metric of the rate limit's and quotas' refusals
	v1.Use(middleware.Metering(a.Usage))               // metering: api_requests, after the response
	v1.Use(middleware.RateLimit(rateLimits{a.Limits})) // rate limit: 429 rate_limited
	v1.Use(middleware.Quota(a.Limits))                 // quota: 429 quota_exceeded
	// Each route, when registered: authz (Casbin) of its permission, then
	// the check of its query and path parameters (httpx.CheckParams).
	routes := httpx.NewRouter(v1, a.Routes, middleware.Authorize(a.Auth), auth.KnownPermission)
	routes.Use(middleware.Idempotency(a.Idempotency, a.log)) // idempotency: POSTs with Idempotency-Key
	routes.Use(middleware.AuditBind(a.Audit))                // last: only the handlers' transactions carry the audit entry
	return routes
}

// adminChain is the pipeline of the operator routes (/admin/v1) after the
// engine's steps: the operator credential, the platform audit log, then,
// per route, the check that the principal is the operator.
func (a *App) adminChain(e *gin.Engine, platformKey string, platformLog middleware.PlatformRecorder) *httpx.Router {
	admin := e.Group("/admin/v1")
	admin.Use(middleware.Operator(platformKey, a.Auth))     // authn: the operator key or an operator token
	admin.Use(middleware.PlatformAudit(platformLog, a.log)) // platform audit log of operator requests
	return httpx.NewRouter(admin, a.Routes, middleware.OperatorOnly, func(p string) bool { return p == operatorPermission })
}
