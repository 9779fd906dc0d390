package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

// Migrator applies the embedded migrations with the owner role.
type Migrator struct {
	m     *migrate.Migrate
	db    *sql.DB
	files fs.FS
}

// NewMigrator connects to ownerURL and prepares the migrations in files.
func NewMigrator(ownerURL string, files fs.FS) (*Migrator, error) {
	sqlDB, err := sql.Open("pgx", ownerURL)
	if err != nil {
		return nil, fmt.Errorf("open owner database: %w", err)
	}
	driver, err := pgxmigrate.WithInstance(sqlDB, &pgxmigrate.Config{})
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("migration driver: %w", err)
	}
	src, err := iofs.New(files, ".")
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("migration files: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", driver)
	if err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("migrator: %w", err)
	}
	return &Migrator{m: m, db: sqlDB, files: files}, nil
}

// Close releases the migrator's connection.
func (m *Migrator) Close() error {
	srcErr, dbErr := m.m.Close()
	return errors.Join(srcErr, dbErr)
}

// Up applies every pending migration.
func (m *Migrator) Up() error {
	if err := m.m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// Down rolls back steps migrations; steps <= 0 rolls back all of them.
// On a Citus database it refuses, before anything runs, to roll back
// CitusDistributeVersion (see ErrCitusDown).
func (m *Migrator) Down(steps int) error {
	if err := m.checkCitusDown(steps); err != nil {
		return err
	}
	var err error
	if steps <= 0 {
		err = m.m.Down()
	} else {
		err = m.m.Steps(-steps)
	}
	if err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate down: %w", err)
	}
	return nil
}

// CitusDistributeVersion is the migration that distributes the tables on
// Citus (0026_citus_distribute), and does nothing elsewhere.
const CitusDistributeVersion = 26

// ErrCitusDown is Down's refusal to roll back CitusDistributeVersion on a
// database with the citus extension: undistributing copies every shard
// back to the coordinator, an operation to plan rather than a migration
// step. Refused by Down before anything runs; were the migration's own
// refusal reached instead, golang-migrate would leave the database marked
// dirty at the version below.
var ErrCitusDown = errors.New("migrate down: migration 0026 (citus_distribute) cannot be rolled back on Citus: " +
	"the tables are distributed; undistribute them by hand (undistribute_table) or restore a backup")

// checkCitusDown returns ErrCitusDown when rolling back steps migrations
// (<= 0: all) would roll back CitusDistributeVersion on a Citus database.
func (m *Migrator) checkCitusDown(steps int) error {
	current, _, err := m.m.Version()
	if errors.Is(err, migrate.ErrNilVersion) || (err == nil && current < CitusDistributeVersion) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("migrate down: version: %w", err)
	}
	var citus bool
	if err := m.db.QueryRow("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')").Scan(&citus); err != nil {
		return fmt.Errorf("migrate down: detect citus: %w", err)
	}
	if !citus {
		return nil
	}
	if steps <= 0 {
		return ErrCitusDown
	}
	// Migrations above 0026 that are applied: steps must stop short of it.
	above, err := versionsBetween(m.files, CitusDistributeVersion, current)
	if err != nil {
		return err
	}
	if steps > above {
		return ErrCitusDown
	}
	return nil
}

// versionsBetween counts the embedded migrations with a version above low
// and at most high.
func versionsBetween(files fs.FS, low, high uint) (int, error) {
	versions, err := upVersions(files)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range versions {
		if v > low && v <= high {
			n++
		}
	}
	return n, nil
}

// Status is where the database stands against the embedded migrations.
type Status struct {
	Current uint // 0 when nothing is applied
	Latest  uint
	Dirty   bool
}

// Status reports the applied and the latest embedded version.
func (m *Migrator) Status(files fs.FS) (Status, error) {
	latest, err := LatestVersion(files)
	if err != nil {
		return Status{}, err
	}
	v, dirty, err := m.m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return Status{Latest: latest}, nil
	}
	if err != nil {
		return Status{}, fmt.Errorf("migration version: %w", err)
	}
	return Status{Current: v, Latest: latest, Dirty: dirty}, nil
}

// LatestVersion returns the highest version among the embedded migrations.
func LatestVersion(files fs.FS) (uint, error) {
	versions, err := upVersions(files)
	if err != nil {
		return 0, err
	}
	var latest uint
	for _, v := range versions {
		latest = max(latest, v)
	}
	return latest, nil
}

// upVersions returns the versions of the embedded up migrations.
func upVersions(files fs.FS) ([]uint, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var versions []uint
	for _, e := range entries {
		name := path.Base(e.Name())
		if !strings.HasSuffix(name, ".up.sql") {
			continue
		}
		n, err := strconv.ParseUint(strings.SplitN(name, "_", 2)[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("migration %s: version is not a number", name)
		}
		versions = append(versions, uint(n))
	}
	return versions, nil
}

// SchemaVersion reads the applied migration version with the runtime role,
// for readiness checks.
// golang-migrate records -1 after a failed first migration: that reads as
// version 0, dirty.
func (d *DB) SchemaVersion(ctx context.Context) (version uint, dirty bool, err error) {
	var v int64
	row := d.sql.QueryRowContext(ctx, "SELECT version, dirty FROM schema_migrations LIMIT 1")
	if err := row.Scan(&v, &dirty); err != nil {
		return 0, false, fmt.Errorf("read schema version: %w", err)
	}
	if v < 0 {
		return 0, true, nil
	}
	return uint(v), dirty, nil
}
