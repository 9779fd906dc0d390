package httpx

import (
	"context"
	"net/http"
	"path"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// Resource is how a module shows one kind of tenant resource, M, in the
// API as R: what the handlers below need to answer its list, get, create
// and update routes the same way in every module.
type Resource[M, R any] struct {
	// Render converts the resource for the API.
	Render func(M) R
	// ID is the rendered resource's id: the list cursor, and the last
	// segment of the Location of a created resource.
	ID func(R) uuid.UUID
	// Version is the resource's version, sent as its ETag; nil for a
	// resource without versions (no ETag).
	Version func(M) int64
	// Tenant resolves the acting tenant, or the refusal to answer with;
	// nil means TenantID. NoTenant is the one of operator resources.
	Tenant func(c *gin.Context) (uuid.UUID, error)
}

// NoTenant is the Tenant of a resource that belongs to no one tenant, on
// the operator's routes: the handlers' functions get uuid.Nil, and the
// route's own authorization is the only check.
func NoTenant(*gin.Context) (uuid.UUID, error) { return uuid.Nil, nil }

// tenant returns the acting tenant (Tenant, else TenantID).
func (r Resource[M, R]) tenant(c *gin.Context) (uuid.UUID, error) {
	if r.Tenant != nil {
		return r.Tenant(c)
	}
	return TenantID(c)
}

// TenantAndID returns the acting tenant (Tenant, else TenantID) and the
// :id path parameter, or the error to answer with.
func (r Resource[M, R]) TenantAndID(c *gin.Context) (tenantID, id uuid.UUID, err error) {
	if tenantID, err = r.tenant(c); err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	if id, err = ParseID(c, "id"); err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	return tenantID, id, nil
}

// etag sends m's ETag when the resource has versions.
func (r Resource[M, R]) etag(c *gin.Context, m M) {
	if r.Version != nil {
		c.Header("ETag", VersionETag(r.Version(m)))
	}
}

// List answers GET of the collection: the acting tenant and the page
// (ParsePage), then the page list fetches for them (up to limit+1 items)
// in the List envelope. A list with filters reads and checks them in list.
func (r Resource[M, R]) List(c *gin.Context, list func(ctx context.Context, tenantID, after uuid.UUID, limit int) ([]M, error)) error {
	tenantID, err := r.tenant(c)
	if err != nil {
		return err
	}
	page, err := ParsePage(c)
	if err != nil {
		return err
	}
	items, err := list(c.Request.Context(), tenantID, page.After, page.Limit)
	if err != nil {
		return err
	}
	WriteList(c, page, items, r.Render, r.ID)
	return nil
}

// Get answers GET …/:id: the resource get returns for the acting tenant
// and :id, with its ETag, or 304 Not Modified when If-None-Match names it
// (WriteVersioned); a resource without versions is answered 200.
func (r Resource[M, R]) Get(c *gin.Context, get func(ctx context.Context, tenantID, id uuid.UUID) (M, error)) error {
	m, err := r.one(c, get)
	if err != nil {
		return err
	}
	if r.Version == nil {
		c.JSON(http.StatusOK, r.Render(m))
		return nil
	}
	WriteVersioned(c, r.Version(m), r.Render(m))
	return nil
}

// Action answers a POST …/:id/<action> without a body, or a GET …/:id
// that never answers 304: the resource act returns for the acting tenant
// and :id, answered status (with its ETag when it has versions).
func (r Resource[M, R]) Action(c *gin.Context, status int, act func(ctx context.Context, tenantID, id uuid.UUID) (M, error)) error {
	m, err := r.one(c, act)
	if err != nil {
		return err
	}
	r.etag(c, m)
	c.JSON(status, r.Render(m))
	return nil
}

// Delete answers DELETE …/:id: del for the acting tenant and :id
// (TenantAndID), then 204 No Content.
func (r Resource[M, R]) Delete(c *gin.Context, del func(ctx context.Context, tenantID, id uuid.UUID) error) error {
	tenantID, id, err := r.TenantAndID(c)
	if err != nil {
		return err
	}
	if err := del(c.Request.Context(), tenantID, id); err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

// one returns the resource fn returns for the acting tenant and :id
// (TenantAndID).
func (r Resource[M, R]) one(c *gin.Context, fn func(ctx context.Context, tenantID, id uuid.UUID) (M, error)) (M, error) {
	tenantID, id, err := r.TenantAndID(c)
	if err != nil {
		var zero M
		return zero, err
	}
	return fn(c.Request.Context(), tenantID, id)
}

// Create answers POST of the collection: the body bound strictly to a Req
// (BindJSON) and turned into the new resource N by toModel, then the
// resource create makes of it for the acting tenant: 201 with its Location
// and ETag.
func Create[Req, N, M, R any](c *gin.Context, r Resource[M, R], toModel func(Req) (N, error),
	create func(ctx context.Context, tenantID uuid.UUID, n N) (M, error)) error {
	tenantID, err := r.tenant(c)
	if err != nil {
		return err
	}
	n, err := bind(c, toModel)
	if err != nil {
		return err
	}
	m, err := create(c.Request.Context(), tenantID, n)
	if err != nil {
		return err
	}
	body := r.Render(m)
	r.etag(c, m)
	WriteCreated(c, r.ID(body), body)
	return nil
}

// Update answers a change of one resource (PATCH …/:id, or POST
// …/:id/<action> with a body): the body bound to a Req and turned into the
// change N by toModel, then the resource update returns for the acting
// tenant and :id: 200 with its ETag.
func Update[Req, N, M, R any](c *gin.Context, r Resource[M, R], toModel func(Req) (N, error),
	update func(ctx context.Context, tenantID, id uuid.UUID, n N) (M, error)) error {
	return r.Action(c, http.StatusOK, func(ctx context.Context, tenantID, id uuid.UUID) (M, error) {
		n, err := bind(c, toModel)
		if err != nil {
			var zero M
			return zero, err
		}
		return update(ctx, tenantID, id, n)
	})
}

// bind decodes the body into a Req (BindJSON) and converts it by toModel.
func bind[Req, N any](c *gin.Context, toModel func(Req) (N, error)) (N, error) {
	var req Req
	if err := BindJSON(c, &req); err != nil {
		var zero N
		return zero, err
	}
	return toModel(req)
}

// WriteCreated answers 201 with body, created at the request's path
// followed by id (its Location).
func WriteCreated(c *gin.Context, id uuid.UUID, body any) {
	c.Header("Location", path.Join(c.Request.URL.Path, id.String()))
	c.JSON(http.StatusCreated, body)
}
