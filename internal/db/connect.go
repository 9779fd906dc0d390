package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Connect opens one connection to url outside any pool, for a session that
// must outlive a transaction (a LISTEN, a session advisory lock). Its
// application_name is appName, so that operators can tell it apart in
// pg_stat_activity. The caller closes it.
func Connect(ctx context.Context, url, appName string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	cfg.RuntimeParams["application_name"] = appName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}
