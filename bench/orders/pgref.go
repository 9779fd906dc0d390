package main

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/devenv"
)

// The bare order SQL the service is held to, and its schema (copies of
// shared/bench, see their headers).
var (
	//go:embed pgref_schema.sql
	pgrefSchemaSQL []byte
	//go:embed pgref_order.sql
	pgrefOrderSQL []byte
)

// pgrefDatabase is the sibling database of the throw-away cluster that
// holds pgref_schema.sql, so that tenantd's own database stays as its
// migrations made it.
const pgrefDatabase = "pgref"

// pgrefRole is the role pgref_schema.sql creates and grants its tables to.
// Like the runtime role of tenantd (devenv.SetAppPassword), it gets a
// password, which the throw-away cluster (initdb -A trust) does not ask
// for but a server that does not trust loopback would.
const (
	pgrefRole     = "app"
	pgrefPassword = "app"
)

// pgref is the reference database, loaded and ready for pgbench.
type pgref struct {
	script script
	conn   *pgx.Conn // the superuser, to count what pgbench wrote
}

// loadPgref creates the pgref database in the cluster at adminURL, loads
// pgref_schema.sql into it as the superuser, and returns the script to run
// as role app.
func loadPgref(ctx context.Context, adminURL string) (_ *pgref, err error) {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("pgref: connect: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgrefDatabase); err != nil {
		return nil, fmt.Errorf("pgref: create database: %w", err)
	}
	conn, err := pgx.Connect(ctx, devenv.DatabaseURL(adminURL, pgrefDatabase))
	if err != nil {
		return nil, fmt.Errorf("pgref: connect: %w", err)
	}
	defer func() {
		if err != nil {
			conn.Close(ctx)
		}
	}()
	// Without arguments Exec sends the whole file in one simple query.
	if _, err := conn.Exec(ctx, string(pgrefSchemaSQL)); err != nil {
		return nil, fmt.Errorf("pgref: load pgref_schema.sql: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", pgrefRole, pgrefPassword)); err != nil {
		return nil, fmt.Errorf("pgref: role password: %w", err)
	}
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return nil, fmt.Errorf("pgref: analyze: %w", err)
	}
	appURL := devenv.DatabaseURL(adminURL, pgrefDatabase, devenv.AsUser(pgrefRole, pgrefPassword))
	return &pgref{script: script{file: "pgref_order.sql", sql: pgrefOrderSQL, url: appURL}, conn: conn}, nil
}

// orders counts the orders pgbench has placed in the pgref database.
func (p *pgref) orders(ctx context.Context) (n int64, err error) {
	if err := p.conn.QueryRow(ctx, "SELECT count(*) FROM bench.orders").Scan(&n); err != nil {
		return 0, fmt.Errorf("pgref: count orders: %w", err)
	}
	return n, nil
}

func (p *pgref) close(ctx context.Context) error { return p.conn.Close(ctx) }
