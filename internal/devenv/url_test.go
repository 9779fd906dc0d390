package devenv_test

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/internal/devenv"
)

func TestDatabaseURL(t *testing.T) {
	t.Parallel()
	const admin = "postgres://admin:secret@127.0.0.1:5432/postgres?sslmode=disable"
	onNode := func(u *url.URL) { u.Host = "10.0.0.2:6432" }
	tests := []struct {
		name  string
		raw   string
		db    string
		edits []func(*url.URL)
		want  string
	}{
		{"database only", admin, "tenantd_x", nil,
			"postgres://admin:secret@127.0.0.1:5432/tenantd_x?sslmode=disable"},
		{"as another user", admin, "tenantd_x", []func(*url.URL){devenv.AsUser("tenantd_app", "p w")},
			"postgres://tenantd_app:p%20w@127.0.0.1:5432/tenantd_x?sslmode=disable"},
		{"edits in turn", admin, "d", []func(*url.URL){devenv.AsUser("a", "b"), onNode},
			"postgres://a:b@10.0.0.2:6432/d?sslmode=disable"},
		{"no database before", "postgres://127.0.0.1:5432", "d", nil, "postgres://127.0.0.1:5432/d"},
		{"unparsable kept", "postgres://a b:%zz@h/x", "d", []func(*url.URL){onNode}, "postgres://a b:%zz@h/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := devenv.DatabaseURL(tt.raw, tt.db, tt.edits...); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLogTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	short := filepath.Join(dir, "short.log")
	long := filepath.Join(dir, "long.log")
	if err := os.WriteFile(short, []byte("started\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(long, []byte(strings.Repeat("a", 500)+strings.Repeat("b", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := devenv.LogTail(short); got != "started\n" {
		t.Errorf("short log: got %q, want the whole file", got)
	}
	if got := devenv.LogTail(long); got != strings.Repeat("b", 2000) {
		t.Errorf("long log: got %d bytes starting %.10q, want the last 2000 (all b)", len(got), got)
	}
	if got := devenv.LogTail(filepath.Join(dir, "missing.log")); got != "" {
		t.Errorf("missing log: got %q, want empty", got)
	}
}
