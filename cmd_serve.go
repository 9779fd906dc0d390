package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/app"
)

var serveUsage = usage{name: "serve", text: `Usage: tenantd serve

Serves the API on HTTP_ADDR until SIGINT or SIGTERM, then drains: /readyz
answers 503 for SHUTDOWN_DRAIN_DELAY, in-flight requests get up to
SHUTDOWN_TIMEOUT to finish, and usage counts are written to PostgreSQL.
Needs DATABASE_URL, WORKER_DATABASE_URL and REDIS_URL (tenantd help lists
the configuration).
`}

func runServe(ctx context.Context, e env, args []string) error {
	cfg, log, err := parseAndLoad(e, serveUsage, args)
	if err != nil {
		return err
	}
	if err := cfg.RequireServices(); err != nil {
		return err
	}
	return serve(ctx, cfg, log)
}

// serve runs the API until ctx ends, then drains: /readyz turns 503 and
// in-flight requests get up to SHUTDOWN_TIMEOUT to finish.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	defer setupTracing(ctx, &cfg, log)()
	c, err := connect(ctx, cfg, log, connectOptions{checkRole: true, app: true})
	if err != nil {
		return err
	}
	defer c.close()
	ln, err := listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	return listenAndServe(ctx, cfg, ln, c.app, log)
}

// listen binds addr, so that "tenantd serving" is logged only once the
// address is ours and a bad or busy address is reported as such.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("HTTP_ADDR %q: %w", addr, err)
	}
	return ln, nil
}

// listenAndServe serves a on ln and runs its background work until ctx
// ends; then it drains (see serve), stops the background work and flushes
// usage counts. It closes ln.
func listenAndServe(ctx context.Context, cfg config.Config, ln net.Listener, a *app.App, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	background := make(chan struct{})
	go func() { a.Run(bgCtx); close(background) }()
	// Whatever happens below, the background loops have stopped before the
	// caller closes Redis and the database under them.
	defer func() { stopBackground(); <-background }()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("tenantd serving", "addr", cfg.HTTPAddr, "admin_routes", cfg.PlatformAPIKey != "")
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("shutting down: readiness now fails; draining", "drain_delay", cfg.DrainDelay, "timeout", cfg.ShutdownTimeout)
	a.SetDraining()
	// Keep serving while load balancers notice /readyz failing.
	time.Sleep(cfg.DrainDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	// Dispatchers and flushers stop at a safe point (between transactions);
	// then every usage count still in this process is written to
	// PostgreSQL. That needs no Redis: an unreachable Redis is no reason to
	// exit 1 (TestGracefulShutdown/redis_down); losing counts is.
	stopBackground()
	<-background
	if err := a.Usage.Flush(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: flush usage: %w", err)
	}
	log.Info("tenantd stopped")
	return nil
}
