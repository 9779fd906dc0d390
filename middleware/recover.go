package middleware

import (
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// Recover turns a panic in a handler into a 500 problem+json that reveals
// nothing, and logs the stack with the request id.
func Recover(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v) // the client went away; let net/http handle it
			}
			log.ErrorContext(c.Request.Context(), "panic in handler", "panic", v, "stack", string(debug.Stack()), "path", c.FullPath())
			if c.Writer.Written() {
				c.Abort()
				return
			}
			httpx.WriteProblem(c, httpx.ProblemFor(fault.New(fault.Internal, "an internal error occurred; quote the request id when reporting it")))
		}()
		c.Next()
	}
}
