package devenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
//
// When the server is a Citus coordinator (see IsCitus), adminURL must be a
// superuser's, and the database is made a Citus one (docs/citus/README.md
// sections 0 and 5): created on every node, with the citus extension in it
// on every node and the coordinator and workers registered in it; the
// three roles created and distributed to the workers (so that the
// migrations, which run as the owner inside a transaction, never have
// Citus propagate a role over the owner's connection, which PostgreSQL
// refuses); citus.propagate_set_commands = 'local' for the database, so
// that the tenant binding (app_bind_tenant's SET LOCAL) reaches the
// workers; and the extension's views in schema public closed to PUBLIC
// (see revokeCitusViews). Migration 0026 then distributes the tables.
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
	citus, err := isCitus(ctx, conn)
	if err != nil {
		return Database{}, fmt.Errorf("provision: %w", err)
	}
	if err := ensureRole(ctx, conn, ownerRole, "LOGIN CREATEROLE PASSWORD '"+ownerPassword+"'"); err != nil {
		return Database{}, fmt.Errorf("provision: %w", err)
	}
	if citus {
		err = provisionCitus(ctx, conn, adminURL, name)
	} else {
		err = createDatabase(ctx, conn, name)
	}
	if err != nil {
		return Database{}, fmt.Errorf("provision %s: %w", name, err)
	}
	return Database{
		Name:      name,
		OwnerURL:  DatabaseURL(adminURL, name, AsUser(ownerRole, ownerPassword)),
		AppURL:    DatabaseURL(adminURL, name, AsUser(appRole, appPassword)),
		WorkerURL: DatabaseURL(adminURL, name, AsUser(workerRole, workerPassword)),
	}, nil
}

// ensureRole creates role with the given options unless it exists.
func ensureRole(ctx context.Context, conn *pgx.Conn, role, options string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return fmt.Errorf("look up role %s: %w", role, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" "+options); err != nil {
		return fmt.Errorf("create role %s: %w", role, err)
	}
	return nil
}

// createDatabase creates database name owned by the owner role unless it
// exists.
func createDatabase(ctx context.Context, conn *pgx.Conn, name string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database: %w", err)
	}
	if exists {
		return nil
	}
	q := fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{name}.Sanitize(), ownerRole)
	if _, err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	return nil
}

// IsCitus reports whether the server at adminURL is a Citus coordinator:
// its admin database has the citus extension and is the coordinator's.
// (shared_preload_libraries is read from pg_settings, which hides it from a
// role that is neither a superuser nor in pg_read_all_settings.) It fails
// when the server preloads Citus without the extension in the admin
// database (no way to find the workers), or is a Citus worker, so
// that a Citus cluster is never mistaken for plain PostgreSQL.
func IsCitus(ctx context.Context, adminURL string) (bool, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return false, fmt.Errorf("is citus: connect: %w", err)
	}
	defer conn.Close(ctx)
	return isCitus(ctx, conn)
}

// isCitus is IsCitus on an open connection to the admin database.
func isCitus(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var preloaded, extension bool
	err := conn.QueryRow(ctx, `
		SELECT coalesce((SELECT setting ~ '(^|[\s,])citus([\s,]|$)' FROM pg_settings
		                 WHERE name = 'shared_preload_libraries'), false),
		       EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')`).Scan(&preloaded, &extension)
	if err != nil {
		return false, fmt.Errorf("detect citus: %w", err)
	}
	switch {
	case !preloaded && !extension:
		return false, nil
	case !extension:
		return false, errors.New("the server preloads citus but its admin database has no citus extension (CREATE EXTENSION citus and register the workers there)")
	}
	var coordinator bool
	if err := conn.QueryRow(ctx, "SELECT citus_is_coordinator()").Scan(&coordinator); err != nil {
		return false, fmt.Errorf("detect citus coordinator: %w", err)
	}
	if !coordinator {
		return false, errors.New("the server is a Citus worker: give the coordinator's URL")
	}
	return true, nil
}

// node is a Citus node's address.
type node struct {
	host string
	port int
}

// citusNodes reads the coordinator and the primary workers registered in
// the admin database. A coordinator that registered no address of its own
// is reached as adminURL is.
func citusNodes(ctx context.Context, conn *pgx.Conn, adminURL string) (coordinator node, workers []node, err error) {
	rows, err := conn.Query(ctx, `
		SELECT nodename, nodeport, groupid = 0 FROM pg_dist_node
		WHERE noderole = 'primary' AND isactive ORDER BY groupid, nodeid`)
	if err != nil {
		return node{}, nil, fmt.Errorf("read pg_dist_node: %w", err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var n node
		var isCoordinator bool
		if err := rows.Scan(&n.host, &n.port, &isCoordinator); err != nil {
			return node{}, nil, fmt.Errorf("read pg_dist_node: %w", err)
		}
		if isCoordinator {
			coordinator, found = n, true
		} else {
			workers = append(workers, n)
		}
	}
	if err := rows.Err(); err != nil {
		return node{}, nil, fmt.Errorf("read pg_dist_node: %w", err)
	}
	if len(workers) == 0 {
		return node{}, nil, errors.New("no Citus worker is registered in the admin database")
	}
	if !found {
		if coordinator, err = nodeOf(adminURL); err != nil {
			return node{}, nil, err
		}
	}
	return coordinator, workers, nil
}

// nodeOf is the address adminURL connects to.
func nodeOf(adminURL string) (node, error) {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return node{}, fmt.Errorf("parse admin url: %w", err)
	}
	return node{host: cfg.Host, port: int(cfg.Port)}, nil
}

// provisionCitus creates database name on every node of the Citus cluster
// whose coordinator conn is connected to, and makes it a Citus database
// (see Provision).
func provisionCitus(ctx context.Context, conn *pgx.Conn, adminURL, name string) error {
	coordinator, workers, err := citusNodes(ctx, conn, adminURL)
	if err != nil {
		return err
	}
	// The runtime and worker roles are those migrations 0001 and 0019
	// create; here they are created first, by the superuser.
	const runtime = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
	for _, role := range []string{appRole, workerRole} {
		if err := ensureRole(ctx, conn, role, runtime); err != nil {
			return err
		}
	}
	// Propagated to the workers (off by default): the database and, below,
	// its extension must exist on every node.
	if _, err := conn.Exec(ctx, "SET citus.enable_create_database_propagation = on"); err != nil {
		return fmt.Errorf("enable database propagation: %w", err)
	}
	if err := createDatabase(ctx, conn, name); err != nil {
		return err
	}
	for _, w := range workers {
		if err := execOn(ctx, nodeURL(adminURL, w, name), "CREATE EXTENSION IF NOT EXISTS citus", revokeCitusViews); err != nil {
			return fmt.Errorf("worker %s:%d: %w", w.host, w.port, err)
		}
	}
	stmts := []string{
		"CREATE EXTENSION IF NOT EXISTS citus",
		revokeCitusViews,
		// pg_dist_node is per database.
		fmt.Sprintf("SELECT citus_set_coordinator_host(%s, %d)", quoteLiteral(coordinator.host), coordinator.port),
	}
	for _, w := range workers {
		// Returns the node's id if it is registered already.
		stmts = append(stmts, fmt.Sprintf("SELECT citus_add_node(%s, %d)", quoteLiteral(w.host), w.port))
	}
	stmts = append(stmts, distributeRoles()...)
	stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s SET citus.propagate_set_commands = 'local'", pgx.Identifier{name}.Sanitize()))
	if err := execOn(ctx, nodeURL(adminURL, coordinator, name), stmts...); err != nil {
		return fmt.Errorf("coordinator: %w", err)
	}
	return nil
}

// revokeCitusViews takes from PUBLIC the views the citus extension puts in
// schema public (citus_tables, citus_schemas: every distributed table's
// name, owner and size), which would otherwise be the runtime role's one
// read that row-level security does not guard. The cluster's superuser
// still reads them. (An ALTER EXTENSION citus UPDATE may grant them again.)
const revokeCitusViews = `DO $$
DECLARE
    v regclass;
BEGIN
    FOR v IN
        SELECT c.oid::regclass FROM pg_class c
        JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'citus'
        WHERE c.relnamespace = 'public'::regnamespace
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', v);
    END LOOP;
END
$$`

// distributeRoles are the statements that make the three roles Citus
// distributed objects of the new database, through Citus's superuser path:
// each one autocommit, run by the superuser. Citus records the roles it
// has propagated per database; a role not recorded yet is propagated when
// an object depends on it, and inside a migration's transaction run by the
// owner that happens over the owner's own connection, as
// worker_create_or_alter_role(... 'ALTER ROLE ... NOSUPERUSER ...'), which
// PostgreSQL 15 refuses to a non-superuser (docs/citus/README.md section
// 5). Changing a function's owner makes the new owner a dependency; the
// function is dropped again. The membership of the worker role in the
// runtime role is granted here too, so that it reaches the workers (where
// it gives tenantd_worker the runtime role's privileges on the shards)
// even when the coordinator already has it.
func distributeRoles() []string {
	stmts := []string{"CREATE OR REPLACE FUNCTION tenantd_provision_roles() RETURNS int LANGUAGE sql AS 'SELECT 1'"}
	for _, role := range []string{appRole, workerRole, ownerRole} {
		stmts = append(stmts, "ALTER FUNCTION tenantd_provision_roles() OWNER TO "+pgx.Identifier{role}.Sanitize())
	}
	return append(stmts,
		"DROP FUNCTION tenantd_provision_roles()",
		fmt.Sprintf("GRANT %s TO %s", appRole, workerRole),
	)
}

// execOn runs each statement on its own, autocommit, on a new connection
// to url.
func execOn(ctx context.Context, url string, stmts ...string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// nodeURL is adminURL pointed at database dbName on node n.
func nodeURL(adminURL string, n node, dbName string) string {
	return DatabaseURL(adminURL, dbName, func(u *url.URL) { u.Host = net.JoinHostPort(n.host, strconv.Itoa(n.port)) })
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
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

// Drop removes a provisioned database; on a Citus coordinator from every
// node.
func Drop(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database: connect: %w", err)
	}
	defer conn.Close(ctx)
	citus, err := isCitus(ctx, conn)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	drop := "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
	if !citus {
		if _, err := conn.Exec(ctx, drop); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	if _, err := conn.Exec(ctx, "SET citus.enable_create_database_propagation = on"); err != nil {
		return fmt.Errorf("drop database %s: enable propagation: %w", name, err)
	}
	// WITH (FORCE) ends the client sessions, not Citus's maintenance
	// daemon of the database, a background worker that Citus stops but
	// that may be starting again (its own connections to the nodes start
	// it), which PostgreSQL then waits 5 s for: end every session of the
	// database first, and try again a few times.
	for attempt := 1; ; attempt++ {
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, name); err != nil {
			return fmt.Errorf("drop database %s: end its sessions: %w", name, err)
		}
		_, err = conn.Exec(ctx, drop)
		if !isInUse(err) || attempt == dropAttempts {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drop database %s: %w", name, ctx.Err())
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// dropAttempts bounds Drop's attempts on a Citus coordinator.
const dropAttempts = 10

// isInUse reports whether err is PostgreSQL's "database is being accessed
// by other users".
func isInUse(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "55006"
}
