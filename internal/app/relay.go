package app

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/internal/relay"
)

// newRelay builds the event relay EVENT_RELAY asks for: nil when it is off.
func newRelay(cfg config.Config, d *db.DB, log *slog.Logger, m *obs.Metrics) (*relay.Relay, error) {
	if cfg.EventRelay != config.RelayNATS {
		return nil, nil
	}
	r, err := relay.New(d, log, relay.Options{URL: cfg.NATSURL, ListenURL: cfg.DatabaseURL, Registerer: m.Registry})
	if err != nil {
		return nil, fmt.Errorf("event relay: %w", err)
	}
	return r, nil
}

// outboxLag is the lag of the dispatcher's subscribers and, when the relay
// runs, of the relay's (which has a dispatcher of its own).
func (a *App) outboxLag(ctx context.Context) (map[string]time.Duration, error) {
	lag, err := a.Events.Lag(ctx)
	if err != nil || a.Relay == nil {
		return lag, err
	}
	rl, err := a.Relay.Lag(ctx)
	if err != nil {
		return nil, err
	}
	maps.Copy(lag, rl)
	return lag, nil
}

// runRelay runs the relay, if any, until ctx ends.
func (a *App) runRelay(ctx context.Context) {
	if a.Relay == nil {
		return
	}
	if err := a.Relay.Run(ctx); err != nil && ctx.Err() == nil {
		a.log.Error("event relay stopped", "err", err)
	}
}
