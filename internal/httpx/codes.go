package httpx

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/fault"
)

// contractCodes are codes of the API contract that the one table of
// problem.go does not map yet, with their statuses. Reply answers them;
// once that table holds them, this one goes and Reply is Error.
var contractCodes = map[fault.Code]int{
	"last_admin": http.StatusConflict, // the tenant's last admin cannot be removed, demoted or revoked
}

// Reply writes err as problem+json like Error, answering the codes of
// contractCodes with their status rather than 500.
func Reply(c *gin.Context, err error) {
	if fe, ok := fault.As(err); ok {
		if status, ok := contractCodes[fe.Code]; ok && StatusOf(fe.Code) == http.StatusInternalServerError {
			p := ProblemFor(err)
			p.Status, p.Title = status, http.StatusText(status)
			c.Error(err) //nolint:errcheck // recorded for the access log, as Error does
			WriteProblem(c, p)
			return
		}
	}
	Error(c, err)
}
