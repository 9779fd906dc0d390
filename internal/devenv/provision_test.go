package devenv_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// queryOne runs q on url and scans its one row into dest.
func queryOne(t testing.TB, url, q string, dest ...any) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, q).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// onDatabase is adminURL pointed at database name, on host:port when port
// is not 0.
func onDatabase(t testing.TB, adminURL, name, host string, port int) string {
	t.Helper()
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	if port != 0 {
		u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	u.Path = "/" + name
	return u.String()
}

// TestIsCitus proves the detection: the test server is a Citus
// coordinator exactly when the run is in Citus mode.
func TestIsCitus(t *testing.T) {
	env := testenv.Get(t)
	got, err := devenv.IsCitus(t.Context(), env.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	if got != env.Citus {
		t.Errorf("IsCitus: got %v, want %v", got, env.Citus)
	}
}

// TestProvisionAndDrop provisions a database twice (the second time finds
// everything in place), checks it, and drops it. On plain PostgreSQL the
// database is the owner's and has no citus extension; on a Citus
// coordinator it exists on every node with the extension, has the nodes
// registered, the three roles distributed and the SET LOCAL propagation
// on, and Drop removes it from every node.
func TestProvisionAndDrop(t *testing.T) {
	env := testenv.Get(t)
	ctx := t.Context()
	name := "tenantd_test_provision_" + testenv.RandomHex(4)
	for range 2 {
		if _, err := devenv.Provision(ctx, env.AdminURL, name); err != nil {
			t.Fatal(err)
		}
	}
	dropped := false
	t.Cleanup(func() {
		if !dropped {
			if err := devenv.Drop(context.Background(), env.AdminURL, name); err != nil {
				t.Error(err)
			}
		}
	})
	dbURL := onDatabase(t, env.AdminURL, name, "", 0)
	var owner string
	var extension bool
	queryOne(t, dbURL, `SELECT pg_get_userbyid(datdba), EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')
		FROM pg_database WHERE datname = current_database()`, &owner, &extension)
	if owner != "tenantd_owner" {
		t.Errorf("got database owner %q, want tenantd_owner", owner)
	}
	if extension != env.Citus {
		t.Errorf("got citus extension %v, want %v (Citus mode)", extension, env.Citus)
	}
	var nodes []string
	if env.Citus {
		nodes = checkCitusDatabase(t, env.AdminURL, name)
	}

	if err := devenv.Drop(ctx, env.AdminURL, name); err != nil {
		t.Fatal(err)
	}
	dropped = true
	for _, n := range append([]string{""}, nodes...) {
		u := onDatabase(t, env.AdminURL, "postgres", "", 0)
		if n != "" {
			host, port, _ := net.SplitHostPort(n)
			p, _ := strconv.Atoi(port)
			u = onDatabase(t, env.AdminURL, "postgres", host, p)
		}
		var exists bool
		queryOne(t, u, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '%s')", name), &exists)
		if exists {
			t.Errorf("node %q: database %s still exists after Drop", n, name)
		}
	}
}

// checkCitusDatabase checks the Citus side of a provisioned database and
// returns its workers as host:port.
func checkCitusDatabase(t *testing.T, adminURL, name string) []string {
	t.Helper()
	dbURL := onDatabase(t, adminURL, name, "", 0)
	var workers []string
	var roles int
	var setting string
	queryOne(t, dbURL, `
		SELECT coalesce((SELECT array_agg(nodename || ':' || nodeport ORDER BY nodeid) FROM pg_dist_node
		                 WHERE groupid > 0 AND noderole = 'primary'), '{}'),
		       (SELECT count(*) FROM pg_dist_object o JOIN pg_roles r ON o.classid = 'pg_authid'::regclass AND o.objid = r.oid
		        WHERE r.rolname IN ('tenantd_owner', 'tenantd_app', 'tenantd_worker')),
		       coalesce((SELECT s FROM pg_db_role_setting, unnest(setconfig) s
		                 WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) AND setrole = 0
		                   AND s LIKE 'citus.propagate_set_commands=%'), '')`,
		&workers, &roles, &setting)
	if len(workers) == 0 {
		t.Fatal("got no worker registered in the new database, want the cluster's")
	}
	if roles != 3 {
		t.Errorf("got %d of the three roles distributed in the new database, want 3", roles)
	}
	if setting != "citus.propagate_set_commands=local" {
		t.Errorf("got database setting %q, want citus.propagate_set_commands=local", setting)
	}
	var coordinator, views bool
	queryOne(t, dbURL, `SELECT citus_is_coordinator(), EXISTS (
		SELECT 1 FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
		  AND has_table_privilege('tenantd_app', c.oid, 'SELECT'))`, &coordinator, &views)
	if !coordinator {
		t.Error("got citus_is_coordinator() false in the new database, want the coordinator registered")
	}
	if views {
		t.Error("got a view of schema public readable by tenantd_app, want the citus extension's closed to PUBLIC")
	}
	for _, w := range workers {
		host, port, err := net.SplitHostPort(w)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		var extension, member, views bool
		queryOne(t, onDatabase(t, adminURL, name, host, p), `
			SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus'),
			       pg_has_role('tenantd_worker', 'tenantd_app', 'MEMBER'),
			       has_table_privilege('tenantd_app', 'public.citus_tables', 'SELECT')`, &extension, &member, &views)
		if !extension || !member || views {
			t.Errorf("worker %s: got citus extension %v, tenantd_worker member of tenantd_app %v, tenantd_app reads citus_tables %v; want true, true, false",
				w, extension, member, views)
		}
		if isCitus, err := devenv.IsCitus(t.Context(), onDatabase(t, adminURL, "postgres", host, p)); err == nil {
			t.Errorf("IsCitus(worker %s): got %v and no error, want an error naming it a worker", w, isCitus)
		}
	}
	return workers
}
