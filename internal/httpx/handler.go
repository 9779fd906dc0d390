package httpx

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// HandlerFunc is a gin handler that returns its error instead of writing
// it: every handler of a module has this shape.
type HandlerFunc func(c *gin.Context) error

// Handle adapts h to gin, once for every handler: an error h returns is
// answered as problem+json (Error). A handler that wrote its answer
// returns nil.
func Handle(h HandlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := h(c); err != nil {
			Error(c, err)
		}
	}
}

// WriteList answers 200 with one page of a list route: items as the store
// fetched them for page (up to page.Limit+1), each rendered by toResponse,
// in the List envelope whose cursor idOf reads (NewList).
func WriteList[M, R any](c *gin.Context, page Page, items []M, toResponse func(M) R, idOf func(R) uuid.UUID) {
	out := make([]R, len(items))
	for i, m := range items {
		out[i] = toResponse(m)
	}
	c.JSON(http.StatusOK, NewList(out, page.Limit, idOf))
}

// WriteVersioned answers a GET of one resource at version: its ETag
// (VersionETag), then 304 Not Modified when If-None-Match matches it, else
// 200 with body.
func WriteVersioned(c *gin.Context, version int64, body any) {
	tag := VersionETag(version)
	c.Header("ETag", tag)
	if NoneMatch(c.GetHeader("If-None-Match"), tag) {
		c.Status(http.StatusNotModified)
		return
	}
	c.JSON(http.StatusOK, body)
}

// DeleteByID answers DELETE …/:id of a tenant resource: the acting tenant
// and the :id parameter (TenantAndID), del for them, then 204 No Content
// (Resource.Delete of a resource whose tenant is TenantID's). The error is
// the one to answer with.
func DeleteByID(c *gin.Context, del func(ctx context.Context, tenantID, id uuid.UUID) error) error {
	return Resource[struct{}, struct{}]{}.Delete(c, del)
}
