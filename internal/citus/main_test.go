//go:build citus

package citus_test

import (
	"testing"

	"github.com/tenantd/tenantd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m, testenv.RequireCitus()) }
