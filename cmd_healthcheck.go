package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

var healthcheckUsage = usage{name: "healthcheck", text: `Usage: tenantd healthcheck

Exits 0 when the server on HTTP_ADDR's port answers GET /healthz on
127.0.0.1 with 200 within 2 seconds, 1 otherwise: a container HEALTHCHECK
(the runtime image has no shell or curl).
`}

func runHealthcheck(ctx context.Context, e env, args []string) error {
	cfg, _, err := parseAndLoad(e, healthcheckUsage, args)
	if err != nil {
		return err
	}
	return healthcheck(ctx, cfg.HTTPAddr)
}

// healthcheck probes the server on addr's port.
func healthcheck(ctx context.Context, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz answered %d", resp.StatusCode)
	}
	return nil
}
