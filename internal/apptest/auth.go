package apptest

import (
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/identity"
)

// Headers HeaderAuth reads.
const (
	// TenantHeader names the tenant a request acts in.
	TenantHeader = "X-Test-Tenant"
	// PlanHeader names the tenant's plan.
	PlanHeader = "X-Test-Plan"
	// SubjectHeader names the API key's subject (default "key-1").
	SubjectHeader = "X-Test-Subject"
)

// HeaderAuth stands in for tenantd's authentication in middleware tests: a
// request with a TenantHeader runs as an API key of that tenant, on the
// plan of its PlanHeader, as the subject of its SubjectHeader (default
// "key-1") and with the request id of its X-Request-ID; a request without
// one carries no principal.
func HeaderAuth(c *gin.Context) {
	if raw := c.GetHeader(TenantHeader); raw != "" {
		subject := c.GetHeader(SubjectHeader)
		if subject == "" {
			subject = "key-1"
		}
		p := identity.Principal{Kind: identity.KindAPIKey, TenantID: uuid.MustParse(raw),
			Plan: c.GetHeader(PlanHeader), Subject: subject}
		ctx := identity.WithPrincipal(c.Request.Context(), p)
		if id := c.GetHeader("X-Request-ID"); id != "" {
			ctx = identity.WithRequestID(ctx, id)
		}
		c.Request = c.Request.WithContext(ctx)
	}
	c.Next()
}
