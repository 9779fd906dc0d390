package middleware

import (
	"net"
	"net/http"
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

// TenantName reads the tenant the request names (namedTenant) into the
// context, before authentication: a token accepted by several tenants is
// resolved with it. Naming two different tenants at once is a mismatch.
func TenantName(baseDomain string) gin.HandlerFunc {
	return func(c *gin.Context) {
		named, err := namedTenant(c.Request, baseDomain)
		if err != nil {
			httpx.Error(c, err)
			return
		}
		if named != "" {
			c.Request = c.Request.WithContext(identity.WithNamedTenant(c.Request.Context(), named))
		}
		c.Next()
	}
}

// namedTenant returns the tenant r names, by slug or id: its X-Tenant
// header, or the subdomain {slug}.{baseDomain} of its host; "" when it
// names none, and errTenantMismatch when the two name different tenants.
// It is the one reader of X-Tenant: everything after it asks
// identity.NamedTenant, and compares with identity.NamesTenant.
func namedTenant(r *http.Request, baseDomain string) (string, error) {
	header := strings.TrimSpace(r.Header.Get(TenantHeader))
	sub := subdomain(r.Host, baseDomain)
	if header != "" && sub != "" && !strings.EqualFold(header, sub) {
		return "", errTenantMismatch
	}
	if header != "" {
		return header, nil
	}
	return sub, nil
}

// TenantCheck runs after authentication: the named tenant, if any, must be
// the credential's tenant, and a suspended tenant is refused.
func TenantCheck() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		p, ok := identity.FromContext(ctx)
		if !ok {
			httpx.Error(c, errNoCredential)
			return
		}
		if named := identity.NamedTenant(ctx); named != "" && !identity.NamesTenant(named, p.TenantID, p.TenantSlug) {
			httpx.Error(c, errTenantMismatch)
			return
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
