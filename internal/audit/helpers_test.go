package audit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
)

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

// tenant is a tenant created for a test.
type tenant struct {
	ID   uuid.UUID
	Slug string
}

// newTenant inserts an active tenant through owner's platform scope.
func newTenant(t testing.TB, owner *db.DB) tenant {
	t.Helper()
	tn := tenant{ID: uuid.New(), Slug: "t-" + randomHex(t, 8)}
	err := owner.WithPlatform(t.Context(), func(tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO tenants (id, slug, name, plan) VALUES (?, ?, ?, 'free')`,
			tn.ID, tn.Slug, "Tenant "+tn.Slug).Error
	})
	if err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	return tn
}

// openSuperuser opens a superuser pool on the package's database: it
// ignores row-level security and grants, as an attacker with the server's
// keys would.
func openSuperuser(t testing.TB, env *testenv.Env) *db.DB {
	t.Helper()
	u, err := url.Parse(env.AdminURL)
	if err != nil {
		t.Fatalf("parse admin url: %v", err)
	}
	u.Path = "/" + env.DBName
	d, err := db.Open(t.Context(), u.String(), db.Options{MaxConns: 2})
	if err != nil {
		t.Fatalf("open superuser database: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// actingCtx is a request context: a principal of tenantID, a request id and
// an origin.
func actingCtx(ctx context.Context, tenantID uuid.UUID, subject string) context.Context {
	ctx = identity.WithPrincipal(ctx, identity.Principal{Kind: identity.KindAPIKey, TenantID: tenantID, Subject: subject})
	ctx = identity.WithRequestID(ctx, "req-"+subject)
	return audit.WithOrigin(ctx, audit.Origin{IP: "203.0.113.7", UserAgent: "test-agent/1.0"})
}

// record appends e for tenantID in a transaction of its own.
func record(t testing.TB, d *db.DB, ctx context.Context, tenantID uuid.UUID, e audit.Entry) {
	t.Helper()
	err := d.WithTenant(ctx, tenantID, func(tx *gorm.DB) error { return audit.Record(ctx, tx, tenantID, e) })
	if err != nil {
		t.Fatalf("record %s: %v", e.Action, err)
	}
}

// events returns the tenant's events in seq order, as the runtime role
// reads them through List, page by page.
func events(t testing.TB, d *db.DB, tenantID uuid.UUID) []audit.Event {
	t.Helper()
	a := audit.New(d, quietLog(), audit.Options{})
	var out []audit.Event
	for before := int64(0); ; {
		page, err := a.List(t.Context(), tenantID, audit.Filter{Limit: 200, BeforeSeq: before})
		if err != nil {
			t.Fatalf("list events: %v", err)
		}
		out = append(out, page[:min(len(page), 200)]...)
		if len(page) <= 200 {
			break
		}
		before = page[199].Seq
	}
	slices.Reverse(out)
	return out
}

// quietLog discards log lines.
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// sqlState returns the SQLSTATE of a PostgreSQL error, or "".
func sqlState(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code
	}
	return ""
}
