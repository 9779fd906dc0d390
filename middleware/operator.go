package middleware

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

var errTenantCredential = fault.New(fault.Forbidden, "tenant credentials cannot use operator routes")

// Operator admits the platform operator key on /admin/v1. The key is
// compared in constant time (over SHA-256 digests, so its length does not
// leak either); a tenant API key is refused with 403.
func Operator(platformKey string) gin.HandlerFunc {
	want := sha256.Sum256([]byte(platformKey))
	return func(c *gin.Context) {
		cred, ok := bearer(c)
		if !ok {
			unauthenticated(c, errNoCredential)
			return
		}
		got := sha256.Sum256([]byte(cred))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			if strings.HasPrefix(cred, "tk_") {
				httpx.Error(c, errTenantCredential)
				return
			}
			unauthenticated(c, fault.New(fault.Unauthenticated, "an operator credential is required"))
			return
		}
		p := identity.Principal{Kind: identity.KindOperator, Subject: "operator"}
		c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
		c.Next()
	}
}
