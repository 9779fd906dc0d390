package middleware

import (
	"bytes"
	"context"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/identity"
)

// OriginRecorder puts where a request came from in its context, for the
// audit trail (audit.Auditor is one).
type OriginRecorder interface {
	WithRequestOrigin(ctx context.Context, clientIP, userAgent string) context.Context
}

// Auditor records an entry for each state-changing request of a tenant
// principal (audit.Auditor is one).
type Auditor interface {
	OriginRecorder
	// Audits reports whether requests of method are audited.
	Audits(method string) bool
	// StartRequest starts a request's entry; finish records its outcome.
	StartRequest(ctx context.Context, p identity.Principal, action, resource string, body []byte) (
		_ context.Context, finish func(status int, replayed bool))
	// BindRequest lets the handler's transactions carry the entry.
	BindRequest(ctx context.Context) context.Context
}

// Origins puts the request's origin (client address as the engine's
// trusted proxies resolve it, and User-Agent) in its context, for events
// recorded before Audit runs: first sign-ins and failed authentications.
// Put it right after RequestID.
func Origins(o OriginRecorder) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Request = c.Request.WithContext(o.WithRequestOrigin(c.Request.Context(), c.ClientIP(), c.Request.UserAgent()))
		c.Next()
	}
}

// Audit audits every request the auditor audits (POST, PUT, PATCH and
// DELETE) of an authenticated tenant principal: action "METHOD
// /route/:template", resource the request's path, and the top-level field
// names of its JSON body (never values); the entry is written with the
// request's first committing write or, failing that, after the response
// with its final status (see audit.Auditor.StartRequest). Put it on the
// tenant routes' group after authentication and the tenant check; pair it
// with AuditBind.
func Audit(a Auditor) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !a.Audits(c.Request.Method) {
			c.Next()
			return
		}
		p, ok := tenantPrincipal(c)
		if !ok {
			c.Next()
			return
		}
		ctx := a.WithRequestOrigin(c.Request.Context(), c.ClientIP(), c.Request.UserAgent())
		route := c.FullPath()
		if route == "" {
			route = c.Request.URL.EscapedPath()
		}
		ctx, finish := a.StartRequest(ctx, p, c.Request.Method+" "+route, c.Request.URL.EscapedPath(), peekBody(c))
		c.Request = c.Request.WithContext(ctx)
		completed := false
		defer func() {
			status := c.Writer.Status()
			if !completed {
				status = http.StatusInternalServerError // a panic, answered by the recovery middleware
			}
			finish(status, c.Writer.Header().Get(ReplayedHeader) == "true")
		}()
		c.Next()
		completed = true
	}
}

// AuditBind lets the handler's transactions carry the request's audit
// entry. Put it last before the handlers (after Idempotency), so that the
// transactions of middleware (idempotency claims, their lease renewals)
// never carry it.
func AuditBind(a Auditor) gin.HandlerFunc {
	return func(c *gin.Context) {
		if ctx := c.Request.Context(); a.BindRequest(ctx) != ctx {
			c.Request = c.Request.WithContext(a.BindRequest(ctx))
		}
		c.Next()
	}
}

// peekBody returns the whole request body and puts it back for the
// handler, read errors included (the body limit's error reaches the
// handler as if nothing had read the body); nil when there is none or it
// cannot be read.
func peekBody(c *gin.Context) []byte {
	if c.Request.Body == nil || c.Request.Body == http.NoBody {
		return nil
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		c.Request.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
		return nil
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	return body
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
