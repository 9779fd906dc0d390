package main

import (
	"context"
	"errors"

	"github.com/tenantd/tenantd/billing"
)

var billingUsage = usage{name: "billing", text: `Usage: tenantd billing export --period YYYY-MM [--format csv|jsonl|cloudevents|stripe-meter-events] [--out FILE] [--provisional]

See tenantd billing export --help.
`}

var billingExportUsage = usage{name: "billing export", text: billing.ExportUsage}

func runBilling(ctx context.Context, e env, args []string) error {
	var a billing.ExportArgs
	if err := parseSubcommand(e, billingUsage, "export", args, billingExportUsage, &a); err != nil {
		return err
	}
	cfg, log, err := loadConfig(e)
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" || cfg.WorkerDatabaseURL == "" {
		return errors.New("invalid configuration: DATABASE_URL and WORKER_DATABASE_URL must be set")
	}
	// Runs as the runtime role; the worker pool reads across tenants.
	c, err := connect(ctx, cfg, log, connectOptions{batch: true, batchConns: 2, checkRole: true})
	if err != nil {
		return err
	}
	defer c.close()
	return billing.RunExport(ctx, c.db, a, e.stdout, e.stderr)
}
