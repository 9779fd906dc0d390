package middleware

import (
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/identity"
)

// RequestIDHeader carries the request id in and out.
const RequestIDHeader = "X-Request-ID"

// RequestID takes the client's X-Request-ID when it is a sane token (1–128
// visible ASCII characters) and otherwise makes one; it is echoed on the
// response and put in the request context for logs and errors.
func RequestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader(RequestIDHeader)
		if !validRequestID(id) {
			id = newID()
		}
		c.Header(RequestIDHeader, id)
		c.Request = c.Request.WithContext(identity.WithRequestID(c.Request.Context(), id))
		c.Next()
	}
}

func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
