package events_test

import (
	"testing"

	"github.com/tenantd/tenantd/internal/testenv"
)

// TestMain gives the package a PostgreSQL of its own: TestOutOfOrderCommit
// needs the cluster's oldest running transaction (pg_snapshot_xmin) to be
// its own, which another package's open transaction on a shared cluster
// would not let it be.
func TestMain(m *testing.M) { testenv.Main(m, testenv.Private()) }
