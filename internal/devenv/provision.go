package devenv

import (
	"context"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
)

// Database is a provisioned database with the URLs of its two roles.
type Database struct {
	Name      string
	OwnerURL  string // tenantd_owner: runs migrations, owns the tables
	AppURL    string // tenantd_app: serves requests under row-level security
	WorkerURL string // tenantd_worker: the background workers' reads across tenants
}

// Dev role passwords. The throw-away cluster trusts loopback connections;
// the passwords matter only when tests run against a server given by URL.
const (
	ownerRole      = "tenantd_owner"
	ownerPassword  = "tenantd_owner"
	appRole        = "tenantd_app"
	appPassword    = "tenantd_app"
	workerRole     = "tenantd_worker"
	workerPassword = "tenantd_worker"
)

// Provision creates (if missing) the owner role and a database it owns, on
// the server at adminURL (a superuser or CREATEROLE+CREATEDB role).
func Provision(ctx context.Context, adminURL, name string) (Database, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return Database{}, fmt.Errorf("provision: connect: %w", err)
	}
	defer conn.Close(ctx)
	// Roles are cluster-wide and test packages provision in parallel:
	// serialise on an advisory lock in the admin database.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(724101)"); err != nil {
		return Database{}, fmt.Errorf("provision: lock: %w", err)
	}
	// The lock is released when the connection closes.
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", ownerRole).Scan(&exists); err != nil {
		return Database{}, fmt.Errorf("provision: %w", err)
	}
	if !exists {
		q := fmt.Sprintf("CREATE ROLE %s LOGIN CREATEROLE PASSWORD '%s'", ownerRole, ownerPassword)
		if _, err := conn.Exec(ctx, q); err != nil {
			return Database{}, fmt.Errorf("provision: create owner role: %w", err)
		}
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return Database{}, fmt.Errorf("provision: %w", err)
	}
	if !exists {
		q := fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{name}.Sanitize(), ownerRole)
		if _, err := conn.Exec(ctx, q); err != nil {
			return Database{}, fmt.Errorf("provision: create database: %w", err)
		}
	}
	return Database{
		Name:      name,
		OwnerURL:  withUser(adminURL, ownerRole, ownerPassword, name),
		AppURL:    withUser(adminURL, appRole, appPassword, name),
		WorkerURL: withUser(adminURL, workerRole, workerPassword, name),
	}, nil
}

// SetAppPassword gives the runtime and worker roles (created by migrations
// 0001 and 0019) their dev passwords, so they can log in to servers that do
// not trust loopback.
func SetAppPassword(ctx context.Context, adminURL string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("set app password: connect: %w", err)
	}
	defer conn.Close(ctx)
	for role, password := range map[string]string{appRole: appPassword, workerRole: workerPassword} {
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", role, password)); err != nil {
			return fmt.Errorf("set %s password: %w", role, err)
		}
	}
	return nil
}

// Drop removes a provisioned database.
func Drop(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func withUser(raw, user, password, dbName string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.User = url.UserPassword(user, password)
	u.Path = "/" + dbName
	return u.String()
}
