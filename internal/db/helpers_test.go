package db_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// quote returns table as a quoted SQL identifier.
func quote(table string) string { return pgx.Identifier{table}.Sanitize() }

// sqlState returns the SQLSTATE of a PostgreSQL error, or "" for any other.
func sqlState(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code
	}
	return ""
}

// wantSQLState fails t unless err is a PostgreSQL error with code want.
func wantSQLState(t testing.TB, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want SQLSTATE %s", want)
	}
	if got := sqlState(err); got != want {
		t.Fatalf("got error %v (SQLSTATE %q), want SQLSTATE %s", err, got, want)
	}
}

// count returns count(*) of table as seen by tx.
func count(t testing.TB, tx *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := tx.Raw("SELECT count(*) FROM " + quote(table)).Scan(&n).Error; err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// tenantSettingOf reads app.tenant_id as tx sees it; "" when unset.
func tenantSettingOf(tx *gorm.DB) (string, error) {
	var s string
	err := tx.Raw("SELECT coalesce(current_setting('app.tenant_id', true), '')").Scan(&s).Error
	return s, err
}

// withUser returns raw with its user and password replaced.
func withUser(t testing.TB, raw, user, password string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse url: %v", err)
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}
