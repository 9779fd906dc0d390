package gdpr

import (
	"fmt"
	"slices"

	"gorm.io/gorm"
)

// tenantTablesSQL lists every table of schema public with a tenant_id
// column: the tenant tables, present and future (internal/db's catalog
// test finds them the same way).
const tenantTablesSQL = `
	SELECT c.relname
	FROM pg_class c
	JOIN pg_namespace n ON n.oid = c.relnamespace
	JOIN pg_attribute a ON a.attrelid = c.oid
	WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
	  AND a.attname = 'tenant_id' AND NOT a.attisdropped
	ORDER BY 1`

// foreignKeysSQL lists (child, parent) of every foreign key between two
// different tables of schema public.
const foreignKeysSQL = `
	SELECT DISTINCT ch.relname AS child, pa.relname AS parent
	FROM pg_constraint k
	JOIN pg_class ch ON ch.oid = k.conrelid
	JOIN pg_class pa ON pa.oid = k.confrelid
	JOIN pg_namespace n ON n.oid = ch.relnamespace
	WHERE k.contype = 'f' AND k.conrelid <> k.confrelid AND n.nspname = 'public'`

// tenantTables returns the tenant tables in name order.
func tenantTables(tx *gorm.DB) ([]string, error) {
	var names []string
	if err := tx.Raw(tenantTablesSQL).Scan(&names).Error; err != nil {
		return nil, fmt.Errorf("list tenant tables: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("list tenant tables: the catalog has none")
	}
	return names, nil
}

// childrenFirst returns the tenant tables ordered so that every table
// comes before the tables it references: deleting in this order never
// leaves a cascade to remove rows uncounted, nor a reference dangling.
func childrenFirst(tx *gorm.DB) ([]string, error) {
	tables, err := tenantTables(tx)
	if err != nil {
		return nil, err
	}
	var keys []struct{ Child, Parent string }
	if err := tx.Raw(foreignKeysSQL).Scan(&keys).Error; err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	// referencedBy[p] = the tenant tables still to delete that reference p.
	referencedBy := map[string]map[string]bool{}
	for _, k := range keys {
		if !slices.Contains(tables, k.Child) || !slices.Contains(tables, k.Parent) {
			continue
		}
		if referencedBy[k.Parent] == nil {
			referencedBy[k.Parent] = map[string]bool{}
		}
		referencedBy[k.Parent][k.Child] = true
	}
	return orderChildrenFirst(tables, referencedBy)
}

// orderChildrenFirst orders tables (sorted by name) so that a table comes
// after every table in referencedBy[table], by name among the tables that
// are free at each step.
func orderChildrenFirst(tables []string, referencedBy map[string]map[string]bool) ([]string, error) {
	left := slices.Clone(tables)
	out := make([]string, 0, len(tables))
	for len(left) > 0 {
		next := -1
		for i, t := range left {
			if len(referencedBy[t]) == 0 {
				next = i
				break
			}
		}
		if next < 0 {
			return nil, fmt.Errorf("order tenant tables: foreign keys form a cycle among %v", left)
		}
		t := left[next]
		out = append(out, t)
		left = slices.Delete(left, next, next+1)
		for _, children := range referencedBy {
			delete(children, t)
		}
	}
	return out, nil
}
