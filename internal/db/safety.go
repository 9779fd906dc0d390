package db

import (
	"context"
	"fmt"
	"strings"
)

// CheckRuntimeRole refuses a runtime role that could see past row-level
// security: a superuser, a role with BYPASSRLS or CREATEROLE, or a role that
// owns (or is a member of the owner of) a table; the same for the Worker
// pool's role.
func (d *DB) CheckRuntimeRole(ctx context.Context) error {
	if err := d.checkRole(ctx); err != nil {
		return err
	}
	if d.worker != nil {
		if err := d.worker.checkRole(ctx); err != nil {
			return fmt.Errorf("worker pool (WORKER_DATABASE_URL): %w", err)
		}
	}
	return nil
}

func (d *DB) checkRole(ctx context.Context) error {
	var (
		name                         string
		super, bypassRLS, createRole bool
		ownedOrInherited             []string
	)
	row := d.sql.QueryRowContext(ctx, `SELECT current_user, rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = current_user`)
	if err := row.Scan(&name, &super, &bypassRLS, &createRole); err != nil {
		return fmt.Errorf("inspect database role: %w", err)
	}
	if super {
		return fmt.Errorf("refusing to serve: database role %q is a superuser, which ignores row-level security; connect as tenantd_app", name)
	}
	if bypassRLS {
		return fmt.Errorf("refusing to serve: database role %q has BYPASSRLS, which ignores row-level security; connect as tenantd_app", name)
	}
	// MEMBER, not USAGE: a NOINHERIT member can still SET ROLE to the owner.
	rows, err := d.sql.QueryContext(ctx, `
		SELECT c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 'p')
		  AND pg_has_role(current_user, c.relowner, 'MEMBER')
		ORDER BY 1`)
	if err != nil {
		return fmt.Errorf("inspect table owners: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return fmt.Errorf("inspect table owners: %w", err)
		}
		ownedOrInherited = append(ownedOrInherited, t)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("inspect table owners: %w", err)
	}
	if len(ownedOrInherited) > 0 {
		return fmt.Errorf("refusing to serve: database role %q owns (or inherits the owner of) tables %s, and a table owner can disable row-level security; run migrations as the owner role and serve as tenantd_app", name, strings.Join(ownedOrInherited, ", "))
	}
	if createRole {
		return fmt.Errorf("refusing to serve: database role %q has CREATEROLE, which can grant itself the owner role; connect as tenantd_app", name)
	}
	return nil
}
