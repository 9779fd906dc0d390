package main

import (
	"context"
	"errors"

	"github.com/tenantd/tenantd/internal/audit"
)

var auditUsage = usage{name: "audit", text: `Usage: tenantd audit verify [--tenant ID|SLUG | --platform] [--max-unsealed-age 10s]

See tenantd audit verify --help.
`}

var auditVerifyUsage = usage{name: "audit verify", text: `Usage: tenantd audit verify [--tenant ID|SLUG | --platform] [--max-unsealed-age 10s]

Recomputes the audit hash chain of every tenant (or one) as the runtime role,
under row-level security, and prints one line per tenant: "ok" with the
chain's head (seq:hash, worth keeping elsewhere), "UNSEALED" when a row has
waited longer than --max-unsealed-age to be sealed, or "BROKEN" with the
first broken seq and why; with --platform, the platform audit log
(operator actions) instead. Exits 1 if a chain is broken or rows wait too
long. Needs DATABASE_URL.
`}

func runAudit(ctx context.Context, e env, args []string) error {
	var a audit.VerifyArgs
	if err := parseSubcommand(e, auditUsage, "verify", args, auditVerifyUsage, &a); err != nil {
		return err
	}
	cfg, log, err := loadConfig(e)
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		return errors.New("invalid configuration: DATABASE_URL must be set")
	}
	c, err := connect(ctx, cfg, log, connectOptions{batch: true, batchConns: 2})
	if err != nil {
		return err
	}
	defer c.close()
	return audit.RunVerify(ctx, c.db, a, e.stdout)
}
