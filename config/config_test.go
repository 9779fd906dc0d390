package config

import (
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/internal/testenv"
)

// env returns a getenv over vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// TestDatabaseTimeouts proves the lock, statement and idle-in-transaction
// timeouts default to 2s, 10s and 30s, may be changed or set to 0, and that
// a bad value fails Load naming its variable.
func TestDatabaseTimeouts(t *testing.T) {
	tests := []struct {
		name                  string
		vars                  map[string]string
		wantLock, wantStmt    time.Duration
		wantIdle              time.Duration
		wantErr, wantNotInErr string // a variable named in Load's error; one it must not name
	}{
		{name: "defaults", wantLock: 2 * time.Second, wantStmt: 10 * time.Second, wantIdle: 30 * time.Second},
		{
			name:     "set",
			vars:     map[string]string{"DB_LOCK_TIMEOUT": "500ms", "DB_STATEMENT_TIMEOUT": "1m", "DB_IDLE_IN_TX_TIMEOUT": "5m"},
			wantLock: 500 * time.Millisecond, wantStmt: time.Minute, wantIdle: 5 * time.Minute,
		},
		{
			name:     "zero leaves the server's setting",
			vars:     map[string]string{"DB_LOCK_TIMEOUT": "0", "DB_STATEMENT_TIMEOUT": "0s", "DB_IDLE_IN_TX_TIMEOUT": "0"},
			wantLock: 0, wantStmt: 0, wantIdle: 0,
		},
		{
			name:     "lock timeout without statement timeout",
			vars:     map[string]string{"DB_LOCK_TIMEOUT": "1h", "DB_STATEMENT_TIMEOUT": "0"},
			wantLock: time.Hour, wantStmt: 0, wantIdle: 30 * time.Second,
		},
		{name: "not a duration", vars: map[string]string{"DB_LOCK_TIMEOUT": "soon"}, wantErr: "DB_LOCK_TIMEOUT", wantNotInErr: "DB_STATEMENT_TIMEOUT"},
		{name: "negative", vars: map[string]string{"DB_STATEMENT_TIMEOUT": "-1s"}, wantErr: "DB_STATEMENT_TIMEOUT"},
		{name: "below a millisecond", vars: map[string]string{"DB_IDLE_IN_TX_TIMEOUT": "500us"}, wantErr: "DB_IDLE_IN_TX_TIMEOUT"},
		{name: "beyond PostgreSQL's range", vars: map[string]string{"DB_IDLE_IN_TX_TIMEOUT": "600h"}, wantErr: "DB_IDLE_IN_TX_TIMEOUT"},
		{
			name:    "lock timeout not shorter than statement timeout",
			vars:    map[string]string{"DB_LOCK_TIMEOUT": "10s", "DB_STATEMENT_TIMEOUT": "10s"},
			wantErr: "DB_LOCK_TIMEOUT: must be shorter than DB_STATEMENT_TIMEOUT",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(env(tt.vars))
			if testenv.WantErr(t, "Load", err, tt.wantErr) {
				if tt.wantNotInErr != "" && strings.Contains(err.Error(), tt.wantNotInErr) {
					t.Fatalf("got error %q, want it not to name %s", err, tt.wantNotInErr)
				}
				return
			}
			if c.DBLockTimeout != tt.wantLock || c.DBStatementTimeout != tt.wantStmt || c.DBIdleInTxTimeout != tt.wantIdle {
				t.Fatalf("got lock %v, statement %v, idle in transaction %v; want %v, %v, %v",
					c.DBLockTimeout, c.DBStatementTimeout, c.DBIdleInTxTimeout, tt.wantLock, tt.wantStmt, tt.wantIdle)
			}
		})
	}
}

// TestVarsListTimeouts keeps the README table (config.Vars) in step with
// what Load reads.
func TestVarsListTimeouts(t *testing.T) {
	want := map[string]string{"DB_LOCK_TIMEOUT": "2s", "DB_STATEMENT_TIMEOUT": "10s", "DB_IDLE_IN_TX_TIMEOUT": "30s"}
	for _, v := range Vars {
		if def, ok := want[v.Name]; ok {
			if v.Default != def {
				t.Errorf("Vars: %s defaults to %q, want %q", v.Name, v.Default, def)
			}
			delete(want, v.Name)
		}
	}
	for name := range want {
		t.Errorf("Vars: %s missing", name)
	}
}
