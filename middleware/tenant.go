package middleware

import (
	"net"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// TenantHeader names the tenant a request means, by slug or id.
const TenantHeader = "X-Tenant"

var (
	errTenantMismatch  = fault.New(fault.TenantMismatch, "the tenant named by the request is not the credential's tenant")
	errTenantSuspended = fault.New(fault.TenantSuspended, "this tenant is suspended; contact the platform operator")
)

// Tenant checks the tenant the request names (X-Tenant, or the subdomain
// {slug}.{baseDomain}) against the credential's tenant, and refuses a
// suspended tenant. It runs after Authenticate.
func Tenant(baseDomain string) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, ok := identity.FromContext(c.Request.Context())
		if !ok {
			httpx.Error(c, errNoCredential)
			return
		}
		for _, named := range []string{c.GetHeader(TenantHeader), subdomain(c.Request.Host, baseDomain)} {
			if named != "" && named != p.TenantSlug && !strings.EqualFold(named, p.TenantID.String()) {
				httpx.Error(c, errTenantMismatch)
				return
			}
		}
		if p.TenantStatus == "suspended" {
			httpx.Error(c, errTenantSuspended)
			return
		}
		c.Next()
	}
}

// subdomain returns slug when host is {slug}.{baseDomain}, else "".
func subdomain(host, baseDomain string) string {
	if baseDomain == "" {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	slug, ok := strings.CutSuffix(strings.ToLower(host), "."+baseDomain)
	if !ok || slug == "" || strings.Contains(slug, ".") {
		return ""
	}
	return slug
}
