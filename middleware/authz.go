package middleware

import (
	"context"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// Authorizer decides whether a principal holds a permission in its tenant.
type Authorizer interface {
	Allowed(ctx context.Context, p identity.Principal, permission string) bool
}

// Authorize returns, for each route's permission, the middleware that
// enforces it; httpx.Router calls it when the route is registered.
func Authorize(a Authorizer) func(permission string) gin.HandlerFunc {
	return func(permission string) gin.HandlerFunc {
		denied := fault.New(fault.Forbidden, "this credential lacks the permission "+permission)
		return func(c *gin.Context) {
			p, ok := identity.FromContext(c.Request.Context())
			if !ok {
				httpx.Error(c, errNoCredential)
				return
			}
			if !a.Allowed(c.Request.Context(), p, permission) {
				httpx.Error(c, denied)
				return
			}
			c.Next()
		}
	}
}
