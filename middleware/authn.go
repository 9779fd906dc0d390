package middleware

import (
	"context"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

// Authenticator verifies a bearer credential.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (identity.Principal, error)
}

var errNoCredential = fault.New(fault.Unauthenticated, "a credential is required: Authorization: Bearer <API key>")

// Authenticate requires a valid bearer credential and puts its principal in
// the request context.
func Authenticate(a Authenticator) gin.HandlerFunc {
	return func(c *gin.Context) {
		cred, ok := bearer(c)
		if !ok {
			unauthenticated(c, errNoCredential)
			return
		}
		p, err := a.Authenticate(c.Request.Context(), cred)
		if err != nil {
			if fault.CodeOf(err) == fault.Unauthenticated {
				unauthenticated(c, err)
				return
			}
			httpx.Error(c, err)
			return
		}
		c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
		c.Next()
	}
}

func unauthenticated(c *gin.Context, err error) {
	c.Header("WWW-Authenticate", `Bearer realm="tenantd"`)
	httpx.Error(c, err)
}

// bearer returns the credential of an "Authorization: Bearer …" header.
func bearer(c *gin.Context) (string, bool) {
	scheme, cred, found := strings.Cut(c.GetHeader("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}
