// Package migrations embeds tenantd's numbered SQL migrations. Every
// tenant-owned table is created together with its row-level security policy.
package migrations

import "embed"

// Files holds NNNN_name.up.sql and NNNN_name.down.sql.
//
//go:embed *.sql
var Files embed.FS
