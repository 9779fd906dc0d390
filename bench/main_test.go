// Package bench measures what tenantd's request path costs. Its benchmarks
// run in process (httptest, no network) against real PostgreSQL and Redis
// from internal/testenv, and every figure is read against a baseline taken
// in the same run; docs/performance.md records the results.
//
//	go test -run '^$' -bench . -benchmem -count 3 ./bench/...
package bench

import (
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/tenantd/tenantd/internal/testenv"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode) // as internal/app does; debug mode prints every route
	testenv.Main(m)
}
