package middleware

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// BodyLimit caps request bodies at limit bytes: a declared length past it is
// refused with 413 at once, and reading past it fails, which
// httpx.BindJSON turns into 413 too.
func BodyLimit(limit int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.ContentLength > limit {
			c.Header("Connection", "close")
			httpx.Error(c, fault.New(fault.PayloadTooLarge, fmt.Sprintf("the request body exceeds %d bytes", limit)))
			return
		}
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
		c.Next()
	}
}
