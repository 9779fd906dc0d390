package db

import (
	"context"
	"fmt"
	"strings"
)

// CheckRuntimeRole refuses a runtime role that could see past row-level
// security: a superuser, a role with BYPASSRLS, or a role that owns (or is a
// member of the owner of) a table with row-level security.
func (d *DB) CheckRuntimeRole(ctx context.Context) error {
	var (
		name             string
		super, bypassRLS bool
		ownedOrInherited []string
	)
	row := d.sql.QueryRowContext(ctx, `SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`)
	if err := row.Scan(&name, &super, &bypassRLS); err != nil {
		return fmt.Errorf("inspect database role: %w", err)
	}
	if super {
		return fmt.Errorf("refusing to serve: database role %q is a superuser, which ignores row-level security; connect as tenantd_app", name)
	}
	if bypassRLS {
		return fmt.Errorf("refusing to serve: database role %q has BYPASSRLS, which ignores row-level security; connect as tenantd_app", name)
	}
	rows, err := d.sql.QueryContext(ctx, `
		SELECT c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
		  AND pg_has_role(current_user, c.relowner, 'USAGE')
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
	return nil
}
