package config

import (
	"strings"
	"testing"

	"github.com/tenantd/tenantd/internal/testenv"
)

// TestEventRelay checks EVENT_RELAY and NATS_URL: off by default, nats with
// nats:// or tls:// URLs, and serve requiring NATS_URL with the relay on.
func TestEventRelay(t *testing.T) {
	tests := []struct {
		name             string
		vars             map[string]string
		wantRelay        string
		wantErr          string // in Load's error
		wantRequireError bool   // RequireServices fails (naming NATS_URL)
	}{
		{name: "off by default"},
		{name: "nats", vars: map[string]string{"EVENT_RELAY": "nats", "NATS_URL": "nats://127.0.0.1:4222"}, wantRelay: "nats"},
		{name: "several servers", vars: map[string]string{"EVENT_RELAY": "nats", "NATS_URL": "nats://a:4222, tls://b:4222"}, wantRelay: "nats"},
		{name: "nats without a URL: dev embeds a server, serve refuses", vars: map[string]string{"EVENT_RELAY": "nats"},
			wantRelay: "nats", wantRequireError: true},
		{name: "unknown relay", vars: map[string]string{"EVENT_RELAY": "kafka"}, wantErr: "EVENT_RELAY: must be nats or unset"},
		{name: "not a NATS URL", vars: map[string]string{"EVENT_RELAY": "nats", "NATS_URL": "http://127.0.0.1:4222"}, wantErr: "NATS_URL: must be nats://"},
		{name: "one bad URL of two", vars: map[string]string{"EVENT_RELAY": "nats", "NATS_URL": "nats://a:4222,b:4222"}, wantErr: "NATS_URL: must be nats://"},
		{name: "URL without the relay", vars: map[string]string{"NATS_URL": "nats://127.0.0.1:4222"}, wantErr: "NATS_URL: is read only with EVENT_RELAY=nats"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"DATABASE_URL": "postgres://a@b/c", "WORKER_DATABASE_URL": "postgres://w@b/c", "REDIS_URL": "redis://r:6379/0"}
			for k, v := range tt.vars {
				vars[k] = v
			}
			c, err := Load(env(vars))
			if testenv.WantErr(t, "Load", err, tt.wantErr) {
				return
			}
			if c.EventRelay != tt.wantRelay {
				t.Errorf("got EventRelay %q, want %q", c.EventRelay, tt.wantRelay)
			}
			err = c.RequireServices()
			if tt.wantRequireError != (err != nil) || (err != nil && !strings.Contains(err.Error(), "NATS_URL")) {
				t.Errorf("got RequireServices error %v, want an error naming NATS_URL: %v", err, tt.wantRequireError)
			}
		})
	}
}
