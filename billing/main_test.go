package billing_test

import (
	"flag"
	"testing"

	"github.com/tenantd/tenantd/internal/testenv"
)

// update rewrites the golden files in testdata/ instead of comparing with
// them: go test ./billing/ -run Golden -update.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) { testenv.Main(m) }
