package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/app"
)

var projectionsUsage = usage{name: "projections", text: `Usage: tenantd projections rebuild

Recreates every tenant's order read model (order_views) from its event
stream, one tenant per transaction, and prints how many orders of how many
tenants it rebuilt. Needs DATABASE_URL, WORKER_DATABASE_URL and REDIS_URL.
`}

func runProjections(ctx context.Context, e env, args []string) error {
	if err := parseSubcommand(e, projectionsUsage, "rebuild", args, projectionsUsage, noFlags{}); err != nil {
		return err
	}
	cfg, log, err := loadConfig(e)
	if err != nil {
		return err
	}
	if err := cfg.RequireServices(); err != nil {
		return err
	}
	c, err := connect(ctx, cfg, log, connectOptions{batch: true, batchConns: 4, app: true})
	if err != nil {
		return err
	}
	defer c.close()
	return rebuildProjections(ctx, c.app, log, e)
}

// rebuildProjections recreates the order read model of every tenant from
// the event streams, one tenant per transaction.
func rebuildProjections(ctx context.Context, a *app.App, log *slog.Logger, e env) error {
	const pageSize = 500
	tenants, orders := 0, 0
	for after := uuid.Nil; ; {
		page, err := a.Tenants.List(ctx, after, pageSize)
		if err != nil {
			return err
		}
		if len(page) > pageSize {
			page = page[:pageSize]
		}
		for _, t := range page {
			n, err := a.Orders.Rebuild(ctx, t.ID)
			if err != nil {
				return fmt.Errorf("rebuild tenant %s: %w", t.Slug, err)
			}
			tenants, orders = tenants+1, orders+n
			after = t.ID
		}
		if len(page) < pageSize {
			break
		}
	}
	log.Info("projections rebuilt", "tenants", tenants, "orders", orders)
	fmt.Fprintf(e.stdout, "rebuilt order_views: %d orders of %d tenants\n", orders, tenants)
	return nil
}
