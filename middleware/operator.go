package middleware

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
)

var errTenantCredential = fault.New(fault.Forbidden, "tenant credentials cannot use operator routes")

// OperatorVerifier verifies a platform operator's token.
type OperatorVerifier interface {
	AuthenticateOperator(ctx context.Context, raw string) (identity.Principal, error)
}

// Operator admits, on /admin/v1, the platform operator key (when set) or a
// token that tokens verifies. The key is compared in constant time (over
// SHA-256 digests, so its length does not leak either); a tenant API key is
// refused with 403.
func Operator(platformKey string, tokens OperatorVerifier) gin.HandlerFunc {
	want := sha256.Sum256([]byte(platformKey))
	return func(c *gin.Context) {
		cred, ok := bearer(c)
		if !ok {
			unauthenticated(c, errNoCredential)
			return
		}
		got := sha256.Sum256([]byte(cred))
		p := identity.Principal{Kind: identity.KindOperator, Subject: "operator-key"}
		switch {
		case platformKey != "" && subtle.ConstantTimeCompare(got[:], want[:]) == 1:
		case strings.HasPrefix(cred, "tk_"):
			httpx.Error(c, errTenantCredential)
			return
		default:
			var err error
			if p, err = tokens.AuthenticateOperator(c.Request.Context(), cred); err != nil {
				if fault.CodeOf(err) == fault.Unauthenticated {
					unauthenticated(c, err)
				} else {
					httpx.Error(c, err)
				}
				return
			}
		}
		c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
		c.Next()
	}
}

var errNotOperator = fault.New(fault.Forbidden, "operator credentials are required")

// OperatorOnly admits only the operator principal that Operator put in the
// context. It is every operator route's authorization (whatever its
// permission: operators hold them all), for httpx.NewRouter.
func OperatorOnly(string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if p, ok := identity.FromContext(c.Request.Context()); !ok || p.Kind != identity.KindOperator {
			httpx.Error(c, errNotOperator)
			return
		}
		c.Next()
	}
}
