package httpx

import (
	"encoding/base64"
	"strconv"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
)

// Page is a validated list request: how many and after which id.
type Page struct {
	Limit int
	After uuid.UUID // uuid.Nil for the first page
}

// List is the response envelope of every list route.
type List[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// ParsePage reads limit (1–200, default 50) and cursor from the query.
func ParsePage(c *gin.Context) (Page, error) {
	var fields fault.Fields
	p := Page{Limit: Limit(c, &fields)}
	if s := c.Query("cursor"); s != "" {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		id, perr := uuid.FromBytes(raw)
		if err != nil || perr != nil {
			fields.Add("cursor", "is not a cursor returned by this API")
		} else {
			p.After = id
		}
	}
	return p, fields.Err()
}

// Limit reads the limit query parameter of a list: 1 to 200, 50 when it
// is absent or empty; a bad one is added to fields (and 50 returned).
func Limit(c *gin.Context, fields *fault.Fields) int {
	s := c.Query("limit")
	if s == "" {
		return 50
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 200 {
		fields.Add("limit", "must be an integer from 1 to 200")
		return 50
	}
	return n
}

// NewList builds the envelope from up to limit+1 items fetched by the store:
// an extra item means there is a next page, whose cursor is the last id kept.
func NewList[T any](items []T, limit int, idOf func(T) uuid.UUID) List[T] {
	return RenderList(items, limit, func(t T) T { return t }, func(t T) string {
		last := idOf(t)
		return base64.RawURLEncoding.EncodeToString(last[:])
	})
}

// RenderList builds the envelope from up to limit+1 items fetched by the
// store, for a list whose cursor is its own: the first limit items, each
// rendered by render, and when there is one more, a next page, whose cursor
// is cursorOf the last item kept. limit is at least 1.
func RenderList[M, R any](items []M, limit int, render func(M) R, cursorOf func(M) string) List[R] {
	l := List[R]{Data: make([]R, 0, min(len(items), limit))}
	for i, m := range items {
		if i == limit {
			cur := cursorOf(items[i-1])
			l.NextCursor = &cur
			break
		}
		l.Data = append(l.Data, render(m))
	}
	return l
}

// ParseID reads a UUID path parameter; a malformed one is a 422 naming it.
func ParseID(c *gin.Context, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param(name))
	if err != nil {
		return uuid.Nil, fault.Invalid(fault.Field(name, "must be a UUID"))
	}
	return id, nil
}

// errNoTenant answers a tenant route reached without a tenant principal.
var errNoTenant = fault.New(fault.Unauthenticated, "a tenant credential is required")

// errNoPrincipal answers a route reached without a principal.
var errNoPrincipal = fault.New(fault.Unauthenticated, "a credential is required")

// Principal returns the acting principal; without one the error is a 401
// for httpx.Error.
func Principal(c *gin.Context) (identity.Principal, error) {
	p, ok := identity.FromContext(c.Request.Context())
	if !ok {
		return identity.Principal{}, errNoPrincipal
	}
	return p, nil
}

// TenantPrincipal returns the acting principal when it acts for a tenant;
// without one (no principal, or an operator's) the error is a 401 for
// httpx.Error.
func TenantPrincipal(c *gin.Context) (identity.Principal, error) {
	p, ok := identity.FromContext(c.Request.Context())
	if !ok || p.TenantID == uuid.Nil {
		return identity.Principal{}, errNoTenant
	}
	return p, nil
}

// TenantID returns the acting principal's tenant; without one the error
// is a 401 for httpx.Error (TenantPrincipal).
func TenantID(c *gin.Context) (uuid.UUID, error) {
	p, err := TenantPrincipal(c)
	return p.TenantID, err
}

// TenantAndID returns the acting principal's tenant and the :id path
// parameter, or the error to answer with.
func TenantAndID(c *gin.Context) (tenantID, id uuid.UUID, err error) {
	if tenantID, err = TenantID(c); err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	if id, err = ParseID(c, "id"); err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	return tenantID, id, nil
}
