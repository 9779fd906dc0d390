package httpx

import "github.com/gin-gonic/gin"

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
