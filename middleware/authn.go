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

// ClientAuthenticator is an Authenticator that also limits failed
// authentications per client address before looking a credential up
// (auth.Service is one). Authenticate uses it when a is one, passing the
// client's address; an address over its budget is answered 429
// rate_limited with Retry-After, and its credential is not looked up.
type ClientAuthenticator interface {
	AuthenticateFrom(ctx context.Context, client, credential string) (identity.Principal, error)
}

var errNoCredential = fault.New(fault.Unauthenticated, "a credential is required: Authorization: Bearer <API key>")

// Authenticate requires a valid bearer credential and puts its principal in
// the request context. The client's address is the connection's (gin's
// ClientIP: X-Forwarded-For only from trusted proxies).
func Authenticate(a Authenticator) gin.HandlerFunc {
	from, throttled := a.(ClientAuthenticator)
	return func(c *gin.Context) {
		cred, ok := bearer(c)
		if !ok {
			unauthenticated(c, errNoCredential)
			return
		}
		var (
			p   identity.Principal
			err error
		)
		if throttled {
			p, err = from.AuthenticateFrom(c.Request.Context(), c.ClientIP(), cred)
		} else {
			p, err = a.Authenticate(c.Request.Context(), cred)
		}
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
