package events

import (
	"context"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
)

// Credentials verifies credentials and answers permission questions; an
// open stream asks it again and again whether its client may still read.
// auth.Service satisfies it.
type Credentials interface {
	Authenticate(ctx context.Context, credential string) (identity.Principal, error)
	Allowed(ctx context.Context, p identity.Principal, permission string) bool
}

// Reasons an open stream ends, sent in its final stream_closed message.
var (
	errCredentialGone = fault.New(fault.Unauthenticated, "the stream's credential is no longer valid (revoked, expired, or its member removed)")
	errOtherPrincipal = fault.New(fault.Unauthenticated, "the stream's credential now names another principal")
	errSuspended      = fault.New(fault.TenantSuspended, "this tenant is suspended; contact the platform operator")
	errNotAllowed     = fault.New(fault.Forbidden, "the stream's credential no longer holds the permission events:read")
	errShuttingDown   = fault.New(fault.Unavailable, "the server is shutting down; reconnect with Last-Event-ID")
)

// streamPermission is the permission the event log's routes require.
const streamPermission = "events:read"

// stillAllowed verifies the stream's credential afresh, as the middleware
// chain verified it when the stream began: the credential authenticates
// (not revoked, not expired; an OIDC user is still a member), as the same
// principal of the same tenant, the tenant is not suspended, and the
// principal's roles, as they are now, grant events:read. The answer is
// only as fresh as the credential caches (invalidated on every replica on
// each of these changes; API_KEY_CACHE_TTL at the latest).
func stillAllowed(ctx context.Context, creds Credentials, was identity.Principal, credential string) error {
	now, err := creds.Authenticate(ctx, credential)
	if err != nil {
		switch fault.CodeOf(err) {
		case fault.Unauthenticated, fault.Forbidden: // Forbidden: signed in, but no member any more
			return errCredentialGone
		}
		return err
	}
	switch {
	case now.Kind != was.Kind || now.TenantID != was.TenantID || now.Subject != was.Subject:
		return errOtherPrincipal
	case now.TenantStatus == "suspended":
		return errSuspended
	case !creds.Allowed(ctx, now, streamPermission):
		return errNotAllowed
	}
	return nil
}

// bearer returns the credential of the request's "Authorization: Bearer …"
// header, as middleware.Authenticate read it.
func bearer(c *gin.Context) string {
	scheme, cred, found := strings.Cut(c.GetHeader("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}
