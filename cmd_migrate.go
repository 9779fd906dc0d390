package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/migrations"
)

var migrateUsage = usage{name: "migrate", text: `Usage: tenantd migrate up | down [N] | status

  up      apply every migration not yet applied
  down    roll back every migration, or the last N
  status  show the schema version

Each prints the schema version it leaves. Runs as the owner role of
MIGRATE_DATABASE_URL (default DATABASE_URL).

Citus: on a database with the citus extension (devenv.Provision creates
one on a Citus coordinator), up detects it and migration 0026 distributes
the tenant tables by tenant_id and makes the platform tables reference
tables; elsewhere 0026 does nothing. Rolling 0026 back is refused on Citus.
`}

func runMigrate(ctx context.Context, e env, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	if err := parseFlags(e, fs, migrateUsage, args, -1); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return refuse(e, fs, migrateUsage, "needs up, down [N] or status")
	}
	action, rest := fs.Arg(0), fs.Args()[1:]
	// The action's own flags: only --help.
	sub := flag.NewFlagSet("migrate "+action, flag.ContinueOnError)
	maxArgs := 0
	switch action {
	case "up", "status":
	case "down":
		maxArgs = 1
	default:
		return refuse(e, fs, migrateUsage, "unknown action %q (want up, down [N] or status)", action)
	}
	if err := parseFlags(e, sub, migrateUsage, rest, maxArgs); err != nil {
		return err
	}
	steps := 0
	if action == "down" && sub.NArg() == 1 {
		n, err := strconv.Atoi(sub.Arg(0))
		if err != nil || n < 1 {
			return refuse(e, fs, migrateUsage, "down: N must be a positive integer, got %q", sub.Arg(0))
		}
		steps = n
	}
	cfg, log, err := loadConfig(e)
	if err != nil {
		return err
	}
	return migrate(cfg, action, steps, log, e)
}

// migrate applies action ("up", "down" with steps, 0 for all, or
// "status") and prints the schema version it leaves.
func migrate(cfg config.Config, action string, steps int, log *slog.Logger, e env) error {
	if cfg.MigrateDatabaseURL == "" {
		return errors.New("invalid configuration: MIGRATE_DATABASE_URL (or DATABASE_URL) must be set")
	}
	m, err := db.NewMigrator(cfg.MigrateDatabaseURL, migrations.Files)
	if err != nil {
		return err
	}
	defer m.Close()
	switch action {
	case "up":
		err = m.Up()
	case "down":
		err = m.Down(steps)
	}
	if err != nil {
		return err
	}
	st, err := m.Status(migrations.Files)
	if err != nil {
		return err
	}
	log.Info("migrations", "current", st.Current, "latest", st.Latest, "dirty", st.Dirty)
	dirty := ""
	if st.Dirty {
		dirty = " (dirty)"
	}
	fmt.Fprintf(e.stdout, "schema version %d of %d%s\n", st.Current, st.Latest, dirty)
	return nil
}
