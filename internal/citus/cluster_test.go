//go:build citus

package citus_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/db"
)

// node is a node of the cluster as the package's database registers it.
type node struct {
	Host  string
	Port  int
	Group int // 0 for the coordinator
}

func (n node) String() string {
	if n.Group == 0 {
		return fmt.Sprintf("coordinator %s:%d", n.Host, n.Port)
	}
	return fmt.Sprintf("worker %s:%d", n.Host, n.Port)
}

// url is raw (a URL of the package's database) pointed at the node.
func (n node) url(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	u.Host = net.JoinHostPort(n.Host, strconv.Itoa(n.Port))
	return u.String()
}

// connect opens a connection closed when the test ends.
func connect(t testing.TB, raw string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), raw)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// clusterNodes is the coordinator and the active primary workers,
// coordinator first.
func clusterNodes(t testing.TB, admin *pgx.Conn) (coordinator node, workers []node) {
	t.Helper()
	rows, err := admin.Query(t.Context(), `SELECT nodename, nodeport, groupid FROM pg_dist_node
		WHERE noderole = 'primary' AND isactive ORDER BY groupid, nodeport`)
	if err != nil {
		t.Fatalf("nodes: %v", err)
	}
	nodes, err := pgx.CollectRows(rows, pgx.RowToStructByPos[node])
	if err != nil {
		t.Fatalf("nodes: %v", err)
	}
	for _, n := range nodes {
		if n.Group == 0 {
			coordinator = n
		} else {
			workers = append(workers, n)
		}
	}
	if coordinator.Port == 0 || len(workers) < 2 {
		t.Fatalf("want a coordinator and at least 2 workers registered in the package's database, got %v", nodes)
	}
	return coordinator, workers
}

// distTable is a hash-distributed table and its distribution column.
type distTable struct {
	Name   string
	Column string
}

// distributedTables lists the hash-distributed tables of the package's
// database.
func distributedTables(t testing.TB, admin *pgx.Conn) []distTable {
	t.Helper()
	rows, err := admin.Query(t.Context(), `SELECT logicalrelid::regclass::text, column_to_column_name(logicalrelid, partkey)
		FROM pg_dist_partition WHERE partmethod = 'h' ORDER BY 1`)
	if err != nil {
		t.Fatalf("distributed tables: %v", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowToStructByPos[distTable])
	if err != nil {
		t.Fatalf("distributed tables: %v", err)
	}
	if len(tables) == 0 {
		t.Fatal("no distributed table: the migrations did not distribute the schema (0026)")
	}
	return tables
}

// shard is one placement of a shard of a distributed table.
type shard struct {
	Table  string
	Column string
	ID     int64
	Name   string
	Node   node
}

// shards lists the placements of every distributed table's shards.
func shards(t testing.TB, admin *pgx.Conn) []shard {
	t.Helper()
	rows, err := admin.Query(t.Context(), `SELECT s.table_name::text, column_to_column_name(p.logicalrelid, p.partkey),
			s.shardid, s.shard_name::text, s.nodename, s.nodeport, n.groupid
		FROM citus_shards s
		JOIN pg_dist_partition p ON p.logicalrelid = s.table_name
		JOIN pg_dist_node n ON n.nodename = s.nodename AND n.nodeport = s.nodeport
		WHERE p.partmethod = 'h' ORDER BY s.shardid`)
	if err != nil {
		t.Fatalf("shards: %v", err)
	}
	var out []shard
	for rows.Next() {
		var s shard
		if err := rows.Scan(&s.Table, &s.Column, &s.ID, &s.Name, &s.Node.Host, &s.Node.Port, &s.Node.Group); err != nil {
			t.Fatalf("shards: %v", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("shards: %v", err)
	}
	return out
}

// sqlState is db.SQLState, by the name the package's tests call it.
var sqlState = db.SQLState

// countByTenant counts rel's rows per value of column, as conn sees them.
func countByTenant(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, rel, column string) (map[string]int64, error) {
	rows, err := q.Query(ctx, fmt.Sprintf("SELECT %s::text, count(*) FROM %s GROUP BY 1",
		pgx.Identifier{column}.Sanitize(), pgx.Identifier{rel}.Sanitize()))
	if err != nil {
		return nil, fmt.Errorf("count %s by %s: %w", rel, column, err)
	}
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, rows.Err()
}
