package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/migrations"
)

// Every package's database is a copy of one template database, migrated
// once per server and named after the migrations it holds
// (tenantd_template_<hash of migrations/>): on a long-lived server given by
// TEST_DATABASE_URL it serves every run until the migrations change.
// Copying takes a fraction of a second; migrating took seconds.
//
// CREATE DATABASE … TEMPLATE fails while any session is connected to the
// template, so building and copying it are serialised on an advisory lock,
// and the finished template refuses connections (ALLOW_CONNECTIONS false).

// templateLock is the advisory lock (in the server's postgres database)
// that serialises building and copying the template.
const templateLock = 724102

// templateName names the template after the embedded migrations.
func templateName() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.Files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.Files, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash migrations: %w", err)
	}
	return "tenantd_template_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// cloneDatabase creates database name as a copy of the migrated template,
// building the template first if the server has none, and returns its
// roles' URLs.
func cloneDatabase(ctx context.Context, adminURL, name string) (devenv.Database, error) {
	tmpl, err := templateName()
	if err != nil {
		return devenv.Database{}, err
	}
	conn, err := lockedConn(ctx, adminURL, templateLock)
	if err != nil {
		return devenv.Database{}, fmt.Errorf("clone database: %w", err)
	}
	defer conn.Close(context.Background())
	if err := ensureTemplate(ctx, conn, adminURL, tmpl); err != nil {
		return devenv.Database{}, err
	}
	q := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s OWNER tenantd_owner", pgx.Identifier{name}.Sanitize(), pgx.Identifier{tmpl}.Sanitize())
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, q)
		var pgErr *pgconn.PgError
		// 55006: a session (the template's last migration connection on
		// its way out) is still connected to the template.
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55006" || attempt == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return devenv.Database{}, fmt.Errorf("create database %s from %s: %w", name, tmpl, err)
	}
	// Database privileges are not copied from a template: grant what
	// migration 0001 granted on the template.
	if _, err := conn.Exec(ctx, "GRANT CONNECT ON DATABASE "+pgx.Identifier{name}.Sanitize()+" TO tenantd_app"); err != nil {
		return devenv.Database{}, fmt.Errorf("grant connect on %s: %w", name, err)
	}
	// The database exists: Provision only returns its URLs.
	return devenv.Provision(ctx, adminURL, name)
}

// ensureTemplate builds the template unless the server has a finished one;
// the caller holds templateLock.
func ensureTemplate(ctx context.Context, conn *pgx.Conn, adminURL, tmpl string) error {
	var isTemplate bool
	err := conn.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", tmpl).Scan(&isTemplate)
	switch {
	case err == nil && isTemplate:
		return nil
	case err == nil:
		// Left half-built by a package that died building it.
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{tmpl}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop unfinished template %s: %w", tmpl, err)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("find template %s: %w", tmpl, err)
	}
	dbase, err := devenv.Provision(ctx, adminURL, tmpl)
	if err != nil {
		return err
	}
	if err := migrateUp(dbase.OwnerURL); err != nil {
		return fmt.Errorf("migrate template %s: %w", tmpl, err)
	}
	if err := devenv.SetAppPassword(ctx, adminURL); err != nil {
		return err
	}
	q := "ALTER DATABASE " + pgx.Identifier{tmpl}.Sanitize() + " WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
	if _, err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("mark template %s: %w", tmpl, err)
	}
	return nil
}

// lockedConn connects to adminURL and takes the session advisory lock
// lock, waiting for it; the lock is released when the connection closes.
func lockedConn(ctx context.Context, adminURL string, lock int64) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lock); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("lock: %w", err)
	}
	return conn, nil
}
