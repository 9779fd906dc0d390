package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantd/tenantd/internal/devenv"
)

// Citus mode (issue 14). When TEST_CITUS_URL is set (the superuser URL of
// the postgres database on the coordinator of a Citus cluster, as
// tools/citus/cluster.sh prints it), each test package gets a database of
// its own on the cluster instead of a copy of the template: a database
// created from a template would copy the coordinator's Citus metadata but
// have no shards on the workers. devenv.Provision creates it the Citus way
// (propagated to the workers, the extension on every node, the nodes
// registered, the roles distributed), and the migrations then distribute
// the tables (0026). Redis stays the run's shared test Redis.
//
// Provisioning is serialised on the cluster by an advisory lock, with the
// roles' passwords: roles are cluster-wide, Citus propagates them to the
// workers, and two ALTER ROLE at once fail ("tuple concurrently updated").
// Migrating is not: Provision has created the roles the migrations would
// create, and everything else they do is the database's own, so the
// packages' (and parallel tests') databases migrate at the same time.
const (
	citusEnv = "TEST_CITUS_URL"
	// citusLock is the advisory lock (in the coordinator's admin database)
	// that serialises provisioning the packages' databases on the cluster.
	citusLock = 724103
	// citusSetUpTimeout bounds a package's set-up in Citus mode: it may
	// wait for other packages' databases to be created and migrated.
	citusSetUpTimeout = 8 * time.Minute
)

// RequireCitus marks a package that tests tenantd on Citus: without
// TEST_CITUS_URL its set-up fails (make test-citus starts a cluster and
// sets it).
func RequireCitus() Option { return func(o *options) { o.requireCitus = true } }

// citusURL is the coordinator's admin URL when the run is in Citus mode.
func citusURL() string { return os.Getenv(citusEnv) }

// checkCitusOptions refuses what Citus mode cannot give.
func checkCitusOptions(o options, adminURL string) error {
	switch {
	case citusURL() == "" && o.requireCitus:
		return fmt.Errorf("this package tests tenantd on Citus and needs %s (the coordinator's superuser URL): run make test-citus", citusEnv)
	case citusURL() == "":
		return nil
	case adminURL != "":
		return fmt.Errorf("both TEST_DATABASE_URL and %s are set: choose one server", citusEnv)
	case o.private:
		return fmt.Errorf("this package restarts private servers, which %s (a shared Citus cluster) cannot give: leave it out of the Citus run", citusEnv)
	}
	return nil
}

// newDatabase creates database name for the package (or one test) on the
// server at adminURL: a copy of the template, or in Citus mode a database
// provisioned and migrated on the cluster.
func (e *Env) newDatabase(ctx context.Context, name string) (devenv.Database, error) {
	if !e.Citus {
		return cloneDatabase(ctx, e.AdminURL, name)
	}
	return citusDatabase(ctx, e.AdminURL, name)
}

// citusDatabase provisions database name on the Citus cluster at adminURL,
// migrates it and checks that it is a Citus database with workers.
func citusDatabase(ctx context.Context, adminURL, name string) (devenv.Database, error) {
	dbase, err := provisionCitus(ctx, adminURL, name)
	if err == nil {
		err = migrateCitus(ctx, adminURL, dbase)
	}
	if err != nil {
		if dropErr := devenv.Drop(context.Background(), adminURL, name); dropErr != nil {
			fmt.Fprintln(os.Stderr, "testenv:", dropErr)
		}
		return devenv.Database{}, fmt.Errorf("citus database %s: %w", name, err)
	}
	return dbase, nil
}

// provisionCitus provisions database name and sets the roles' passwords,
// holding citusLock.
func provisionCitus(ctx context.Context, adminURL, name string) (devenv.Database, error) {
	conn, err := lockedConn(ctx, adminURL, citusLock)
	if err != nil {
		return devenv.Database{}, err
	}
	defer conn.Close(context.Background())
	dbase, err := devenv.Provision(ctx, adminURL, name)
	if err != nil {
		return devenv.Database{}, fmt.Errorf("provision: %w", err)
	}
	// Provision created the runtime roles on Citus: their passwords now,
	// under the lock.
	if err := devenv.SetAppPassword(ctx, adminURL); err != nil {
		return devenv.Database{}, err
	}
	return dbase, nil
}

// migrateCitus migrates the provisioned database and checks it is a Citus
// one.
func migrateCitus(ctx context.Context, adminURL string, dbase devenv.Database) error {
	if err := migrateUp(dbase.OwnerURL); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return checkCitusDatabase(ctx, devenv.DatabaseURL(adminURL, dbase.Name), dbase.Name)
}

// checkCitusDatabase fails unless database name has the citus extension
// and at least one worker registered: a package in Citus mode must not
// silently test plain PostgreSQL.
func checkCitusDatabase(ctx context.Context, dbURL, name string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("check citus database %s: connect: %w", name, err)
	}
	defer conn.Close(context.Background())
	var ext bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')").Scan(&ext); err != nil {
		return fmt.Errorf("check citus database %s: %w", name, err)
	}
	if !ext {
		return fmt.Errorf("database %s on the citus cluster has no citus extension: devenv.Provision must create it the Citus way (docs/citus/README.md §0)", name)
	}
	var workers int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND isactive AND groupid > 0").Scan(&workers); err != nil {
		return fmt.Errorf("check citus database %s: workers: %w", name, err)
	}
	if workers == 0 {
		return fmt.Errorf("database %s on the citus cluster has no worker registered: devenv.Provision must add the nodes", name)
	}
	return nil
}

// AdminDBURL is the admin role's URL on the package's database: the
// superuser in Citus mode, for catalog queries and shard moves that the
// owner may not run.
func (e *Env) AdminDBURL() string { return devenv.DatabaseURL(e.AdminURL, e.DBName) }

// plainServer is a plain PostgreSQL of the package's own, started the first
// time a package in Citus mode asks for a plain database (PlainDatabase).
type plainServer struct {
	once sync.Once
	env  *devenv.Env
	err  error
}

// PlainDatabase is a migrated database on plain PostgreSQL, dropped when
// the test ends, for comparisons with Citus in the same run. In Citus mode
// it is on a throw-away PostgreSQL of the package's own (started once,
// stopped after the package's tests); otherwise it is NewDatabase.
func (e *Env) PlainDatabase(t testing.TB) devenv.Database {
	t.Helper()
	if !e.Citus {
		return e.NewDatabase(t)
	}
	e.plain.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		e.plain.env, e.plain.err = devenv.Start(ctx, Logger())
	})
	if e.plain.err != nil {
		t.Fatalf("start a plain postgresql: %v", e.plain.err)
	}
	adminURL := e.plain.env.AdminURL
	name := e.DBName + "_plain_" + RandomHex(4)
	dbase, err := cloneDatabase(t.Context(), adminURL, name)
	if err != nil {
		t.Fatalf("plain database: %v", err)
	}
	t.Cleanup(func() {
		if err := devenv.Drop(context.Background(), adminURL, name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return dbase
}

// stopPlain stops the package's plain PostgreSQL, if it started one.
func (e *Env) stopPlain() {
	if e.plain.env != nil {
		e.plain.env.Stop()
	}
}
