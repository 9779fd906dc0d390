package db_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestConnect: a connection of the URL's user under the application name
// given; a URL that does not parse, or a server that does not answer, an
// error saying which.
func TestConnect(t *testing.T) {
	t.Parallel()
	conn, err := db.Connect(t.Context(), testenv.Get(t).AppURL, "tenantd-connect-test")
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) }) // t.Context() has ended when cleanups run
	var user, name string
	if err := conn.QueryRow(t.Context(), "SELECT current_user, current_setting('application_name')").Scan(&user, &name); err != nil {
		t.Fatalf("read the session: %v", err)
	}
	if user != "tenantd_app" || name != "tenantd-connect-test" {
		t.Errorf("got user %q, application_name %q; want tenantd_app, tenantd-connect-test", user, name)
	}

	for _, c := range []struct{ url, want string }{
		{"postgres://u@localhost:notaport/db", "parse url: "},
		{"postgres://u@127.0.0.1:1/db?connect_timeout=2", "connect: "},
	} {
		if conn, err := db.Connect(t.Context(), c.url, "x"); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			if conn != nil {
				conn.Close(t.Context())
			}
			t.Errorf("%s: got %v, want an error beginning %q", c.url, err, c.want)
		}
	}
}
