package db_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/testenv"
)

// tenantFixtures inserts one row of a tenant-owned table for tenantID on tx,
// a transaction with a tenant set. Every table with a tenant_id column needs
// an entry: TestRLSIsolation fails for a table without one.
var tenantFixtures = map[string]func(tx *gorm.DB, tenantID uuid.UUID) error{
	"api_keys": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO api_keys (tenant_id, id, name, prefix, secret_hash, roles, created_by)
			VALUES (?, ?, 'fixture', ?, ?, ARRAY['viewer'], 'rls_test')`,
			tenantID, uuid.New(), "fx"+uuid.NewString()[:12], []byte("not-a-hash")).Error
	},
	// A chain's first link; the hashes are not checked here (see
	// internal/audit for the chain).
	"audit_events": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor, action, resource, status, prev_hash, hash)
			VALUES (?, 1, ?, now(), 'rls_test', 'fixture.created', 'fixture', 0, ?, ?)`,
			tenantID, uuid.New(), make([]byte, 32), make([]byte, 32)).Error
	},
	"billing_lines": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO billing_lines (tenant_id, period, meter, usage_period, tenant_slug, plan,
			quantity, included, billable, unit_price, unit_size, amount, currency, hard_limit)
			VALUES (?, '2026-01', 'api_requests', '2026-01', 'fixture', 'free', 1, 100000, 0, 0, 1000, 0, 'EUR', true)`, tenantID).Error
	},
	"dead_letters": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO dead_letters (tenant_id, id, subscriber, event_id, position, error, attempts)
			VALUES (?, ?, 'rls_test', ?, 1, 'fixture', 1)`, tenantID, uuid.New(), uuid.New()).Error
	},
	// position and txid take their defaults (migration 0025: next_append_position() and the transaction id).
	"events": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO events (tenant_id, id, stream_id, version, type, data)
			VALUES (?, ?, ?, 1, 'fixture.created', '{}')`, tenantID, uuid.New(), "fx-"+uuid.NewString()[:8]).Error
	},
	"usage_counters": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO usage_counters (tenant_id, meter, hour, billing_period, quantity)
			VALUES (?, 'api_requests', date_trunc('hour', now()), to_char(now(), 'YYYY-MM'), 1)`, tenantID).Error
	},
	"idempotency_keys": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO idempotency_keys (tenant_id, credential, key, request_hash)
			VALUES (?, 'api_key:rls_test', ?, ?)`,
			tenantID, "fx-"+uuid.NewString(), make([]byte, 32)).Error
	},
	"order_views": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO order_views (tenant_id, id, customer_id, status, items, total, currency,
			reservation_expires_at, version, created_at, updated_at)
			VALUES (?, ?, 'c-1', 'pending', '[]', 0, 'EUR', now(), 1, now(), now())`, tenantID, uuid.New()).Error
	},
	"payments": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO payments (tenant_id, id, order_id, status, amount, currency, payment_method)
			VALUES (?, ?, ?, 'processing', 100, 'EUR', 'card')`,
			tenantID, uuid.New(), uuid.New()).Error
	},
	// A refund needs its succeeded payment: the fixture inserts both.
	"refunds": func(tx *gorm.DB, tenantID uuid.UUID) error {
		paymentID := uuid.New()
		if err := tx.Exec(`INSERT INTO payments (tenant_id, id, order_id, status, amount, currency, payment_method, captured, refunded)
			VALUES (?, ?, ?, 'succeeded', 100, 'EUR', 'card', 100, 40)`,
			tenantID, paymentID, uuid.New()).Error; err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO refunds (tenant_id, id, payment_id, amount, currency) VALUES (?, ?, ?, 40, 'EUR')`,
			tenantID, uuid.New(), paymentID).Error
	},
	// A reservation needs its product: the fixture inserts both.
	"reservations": func(tx *gorm.DB, tenantID uuid.UUID) error {
		productID := uuid.New()
		if err := tx.Exec(`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand, stock_reserved)
			VALUES (?, ?, ?, 'Reserved', 100, 'EUR', 5, 1)`, tenantID, productID, "RSV-"+uuid.NewString()[:8]).Error; err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO reservations (tenant_id, id, order_id, product_id, quantity, status, expires_at)
			VALUES (?, ?, ?, ?, 1, 'held', now())`, tenantID, uuid.New(), uuid.New(), productID).Error
	},
	"members": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO members (tenant_id, id, issuer, subject, roles, status, created_by)
			VALUES (?, ?, 'https://idp.example', ?, ARRAY['viewer'], 'active', 'rls_test')`,
			tenantID, uuid.New(), "sub-"+uuid.NewString()[:8]).Error
	},
	"webhook_endpoints": func(tx *gorm.DB, tenantID uuid.UUID) error {
		_, err := webhookEndpoint(tx, tenantID)
		return err
	},
	// A delivery needs its endpoint: the fixture inserts both. It is due
	// now (the worker function's probe in catalog_test.go finds it).
	"webhook_deliveries": func(tx *gorm.DB, tenantID uuid.UUID) error {
		_, err := webhookDelivery(tx, tenantID)
		return err
	},
	"webhook_attempts": func(tx *gorm.DB, tenantID uuid.UUID) error {
		deliveryID, err := webhookDelivery(tx, tenantID)
		if err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO webhook_attempts (tenant_id, delivery_id, attempt, attempted_at, status_code, latency_ms)
			VALUES (?, ?, 1, now(), 500, 12)`, tenantID, deliveryID).Error
	},
	// A pending export (its worker function's probe in catalog_test.go
	// finds it); at most one is open per tenant.
	"tenant_exports": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO tenant_exports (tenant_id, id, status, requested_by) VALUES (?, ?, 'pending', 'rls_test')`,
			tenantID, uuid.New()).Error
	},
	"products": func(tx *gorm.DB, tenantID uuid.UUID) error {
		return tx.Exec(`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
			VALUES (?, ?, ?, 'Fixture', 100, 'EUR', 5)`,
			tenantID, uuid.New(), "FX-"+uuid.NewString()[:8]).Error
	},
}

// webhookEndpoint returns the tenant's webhook endpoint, inserting one if
// it has none, and webhookDelivery likewise a delivery (of that endpoint):
// the fixtures of webhook_attempts and webhook_deliveries need their
// parents, and TestRLSIsolation, which visits tables in name order, counts
// one row per tenant in each.
func webhookEndpoint(tx *gorm.DB, tenantID uuid.UUID) (uuid.UUID, error) {
	var ids []uuid.UUID
	if err := tx.Raw(`SELECT id FROM webhook_endpoints WHERE tenant_id = ? ORDER BY id LIMIT 1`, tenantID).Scan(&ids).Error; err != nil || len(ids) > 0 {
		return firstID(ids), err
	}
	id := uuid.New()
	return id, tx.Exec(`INSERT INTO webhook_endpoints (tenant_id, id, url, event_types, status, secret)
		VALUES (?, ?, 'https://hooks.example/in', ARRAY['*'], 'enabled', ?)`, tenantID, id, []byte("\x00fixture")).Error
}

func webhookDelivery(tx *gorm.DB, tenantID uuid.UUID) (uuid.UUID, error) {
	var ids []uuid.UUID
	if err := tx.Raw(`SELECT id FROM webhook_deliveries WHERE tenant_id = ? ORDER BY id LIMIT 1`, tenantID).Scan(&ids).Error; err != nil || len(ids) > 0 {
		return firstID(ids), err
	}
	endpointID, err := webhookEndpoint(tx, tenantID)
	if err != nil {
		return uuid.Nil, err
	}
	id := uuid.New()
	return id, tx.Exec(`INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type, origin, payload, status, next_attempt_at)
		VALUES (?, ?, ?, ?, 'fixture.created', 'event', '{}', 'pending', now())`, tenantID, id, endpointID, uuid.New()).Error
}

func firstID(ids []uuid.UUID) uuid.UUID {
	if len(ids) == 0 {
		return uuid.Nil
	}
	return ids[0]
}

// TestRLSIsolation proves for every tenant table that the runtime role sees
// nothing without a tenant, only its tenant's rows with one, and can neither
// write into nor touch another tenant's rows.
func TestRLSIsolation(t *testing.T) {
	t.Parallel()
	owner, app, a, b := twoTenants(t, 4)
	ctx := t.Context()

	for _, table := range tenantTables(t, app) {
		t.Run(table, func(t *testing.T) {
			insert, ok := tenantFixtures[table]
			if !ok {
				t.Fatalf("table %s has tenant_id but no fixture in rls_test.go: add one", table)
			}
			// FORCE ROW LEVEL SECURITY binds the owner too: insert with the
			// tenant set.
			for _, id := range []uuid.UUID{a, b} {
				if err := owner.WithTenant(ctx, id, func(tx *gorm.DB) error { return insert(tx, id) }); err != nil {
					t.Fatalf("insert fixture for %s: %v", id, err)
				}
			}
			q := quote(table)
			tenantIDs := func(tx *gorm.DB) []string {
				t.Helper()
				var ids []string
				if err := tx.Raw("SELECT tenant_id::text FROM " + q + " ORDER BY 1").Scan(&ids).Error; err != nil {
					t.Fatalf("read %s: %v", table, err)
				}
				return ids
			}

			for _, s := range []struct {
				name string
				run  func(fn func(tx *gorm.DB) error) error
			}{
				{"no tenant, outside a transaction", func(fn func(tx *gorm.DB) error) error { return fn(app.Unscoped(ctx)) }},
				{"no tenant, in a transaction", func(fn func(tx *gorm.DB) error) error { return app.Unscoped(ctx).Transaction(fn) }},
				{"platform scope", func(fn func(tx *gorm.DB) error) error { return app.WithPlatform(ctx, fn) }},
				{"unknown tenant", func(fn func(tx *gorm.DB) error) error { return app.WithTenant(ctx, uuid.New(), fn) }},
			} {
				t.Run(s.name, func(t *testing.T) {
					err := s.run(func(tx *gorm.DB) error {
						if got := count(t, tx, table); got != 0 {
							t.Errorf("got %d rows, want 0", got)
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
				})
			}
			for name, id := range map[string]uuid.UUID{"tenant A": a, "tenant B": b} {
				t.Run(name+" sees only its rows", func(t *testing.T) {
					inTenant(t, app, id, func(tx *gorm.DB) error {
						if got, want := tenantIDs(tx), []string{id.String()}; !slices.Equal(got, want) {
							t.Errorf("got tenant_ids %v, want %v", got, want)
						}
						return nil
					})
				})
			}
			t.Run("insert for another tenant", func(t *testing.T) {
				err := app.WithTenant(ctx, a, func(tx *gorm.DB) error { return insert(tx, b) })
				wantSQLState(t, err, "42501")
			})
			t.Run("move own row to another tenant", func(t *testing.T) {
				err := app.WithTenant(ctx, a, func(tx *gorm.DB) error {
					return tx.Exec("UPDATE "+q+" SET tenant_id = ? WHERE tenant_id = ?", b, a).Error
				})
				// On Citus a distributed table's distribution column cannot
				// change at all: refused (0A000) before the policy is checked.
				if testenv.Get(t).Citus && sqlState(err) == "0A000" && strings.Contains(err.Error(), "modifying the partition value") {
					return
				}
				wantSQLState(t, err, "42501")
			})
			// Append-only tables (events, usage_counters' deletes) grant the
			// runtime role no UPDATE or DELETE at all: then it must be refused.
			granted := func(t *testing.T, privilege string) bool {
				t.Helper()
				var ok bool
				if err := app.Unscoped(ctx).Raw("SELECT has_table_privilege('tenantd_app', ?::regclass, ?)",
					q, privilege).Scan(&ok).Error; err != nil {
					t.Fatalf("read %s privilege on %s: %v", privilege, table, err)
				}
				return ok
			}
			for _, w := range []struct{ name, privilege, sql, done string }{
				{"update another tenant's rows", "UPDATE", "UPDATE " + q + " SET tenant_id = tenant_id WHERE tenant_id = ?", "updated"},
				{"delete another tenant's rows", "DELETE", "DELETE FROM " + q + " WHERE tenant_id = ?", "deleted"},
			} {
				t.Run(w.name, func(t *testing.T) {
					err := app.WithTenant(ctx, a, func(tx *gorm.DB) error {
						res := tx.Exec(w.sql, b)
						if res.Error == nil && res.RowsAffected != 0 {
							t.Errorf("got %d rows %s, want 0", res.RowsAffected, w.done)
						}
						return res.Error
					})
					if !granted(t, w.privilege) {
						wantSQLState(t, err, "42501")
						return
					}
					if err != nil {
						t.Fatal(err)
					}
				})
			}
			t.Run("rows intact", func(t *testing.T) {
				for _, id := range []uuid.UUID{a, b} {
					inTenant(t, owner, id, func(tx *gorm.DB) error {
						var n int64
						if err := tx.Raw("SELECT count(*) FROM "+q+" WHERE tenant_id = ?", id).Scan(&n).Error; err != nil {
							return err
						}
						if n != 1 {
							t.Errorf("got %d rows of %s, want 1", n, id)
						}
						return nil
					})
				}
			})
		})
	}
}

// TestTenantsTableRLS proves a tenant sees only its own tenants row, no
// tenant sees none, and the platform scope sees them all. It runs alone (not
// parallel) so that the platform's view can be compared with the owner's.
func TestTenantsTableRLS(t *testing.T) {
	owner, app, a, b := twoTenants(t, 2)
	ctx := t.Context()

	ids := func(t *testing.T, tx *gorm.DB) []string {
		t.Helper()
		var got []string
		if err := tx.Raw("SELECT id::text FROM tenants ORDER BY 1").Scan(&got).Error; err != nil {
			t.Fatalf("read tenants: %v", err)
		}
		return got
	}
	// The owner reads every row through its owner_lookup policy.
	all := ids(t, owner.Unscoped(ctx))
	if !slices.Contains(all, a.String()) || !slices.Contains(all, b.String()) {
		t.Fatalf("owner sees tenants %v, want them to include %s and %s", all, a, b)
	}

	tests := []struct {
		name string
		run  func(fn func(tx *gorm.DB) error) error
		want []string
	}{
		{"tenant A", func(fn func(tx *gorm.DB) error) error { return app.WithTenant(ctx, a, fn) }, []string{a.String()}},
		{"tenant B", func(fn func(tx *gorm.DB) error) error { return app.WithTenant(ctx, b, fn) }, []string{b.String()}},
		{"no tenant, outside a transaction", func(fn func(tx *gorm.DB) error) error { return fn(app.Unscoped(ctx)) }, nil},
		{"no tenant, in a transaction", func(fn func(tx *gorm.DB) error) error { return app.Unscoped(ctx).Transaction(fn) }, nil},
		{"platform", func(fn func(tx *gorm.DB) error) error { return app.WithPlatform(ctx, fn) }, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(func(tx *gorm.DB) error {
				if got := ids(t, tx); !slices.Equal(got, tt.want) {
					t.Errorf("got tenants %v, want %v", got, tt.want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("tenant cannot update another tenant", func(t *testing.T) {
		inTenant(t, app, a, func(tx *gorm.DB) error {
			res := tx.Exec("UPDATE tenants SET name = 'hijacked' WHERE id = ?", b)
			if res.Error == nil && res.RowsAffected != 0 {
				t.Errorf("got %d rows updated, want 0", res.RowsAffected)
			}
			return res.Error
		})
	})
	t.Run("tenant cannot create a tenant", func(t *testing.T) {
		err := app.WithTenant(ctx, a, func(tx *gorm.DB) error {
			return tx.Exec(`INSERT INTO tenants (id, slug, name, plan) VALUES (?, ?, 'Other', 'free')`,
				uuid.New(), "t-"+testenv.RandomHex(8)).Error
		})
		wantSQLState(t, err, "42501")
	})
	t.Run("no tenant cannot create a tenant", func(t *testing.T) {
		err := app.Unscoped(ctx).Exec(`INSERT INTO tenants (id, slug, name, plan) VALUES (?, ?, 'Other', 'free')`,
			uuid.New(), "t-"+testenv.RandomHex(8)).Error
		wantSQLState(t, err, "42501")
	})
}

// TestAuthAPIKeyLookup proves the SECURITY DEFINER lookup is the runtime
// role's only way to an API key before its tenant is known.
func TestAuthAPIKeyLookup(t *testing.T) {
	t.Parallel()
	owner, app, a, b := twoTenants(t, 2)
	ctx := t.Context()
	keyID, prefix := uuid.New(), "lk"+testenv.RandomHex(6)
	err := owner.WithTenant(ctx, a, func(tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO api_keys (tenant_id, id, name, prefix, secret_hash, roles, created_by)
			VALUES (?, ?, 'lookup', ?, ?, ARRAY['admin'], 'rls_test')`, a, keyID, prefix, []byte("hash")).Error
	})
	if err != nil {
		t.Fatalf("insert key: %v", err)
	}

	type found struct {
		KeyID        string
		TenantID     string
		TenantStatus string
	}
	lookup := func(t *testing.T, prefix string) []found {
		t.Helper()
		var rows []found
		err := app.Unscoped(ctx).Raw(`SELECT key_id::text, tenant_id::text, tenant_status
			FROM auth_api_key_lookup(?)`, prefix).Scan(&rows).Error
		if err != nil {
			t.Fatalf("auth_api_key_lookup(%q): %v", prefix, err)
		}
		return rows
	}

	t.Run("existing prefix", func(t *testing.T) {
		got := lookup(t, prefix)
		want := []found{{KeyID: keyID.String(), TenantID: a.String(), TenantStatus: "active"}}
		if !slices.Equal(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("unknown prefix", func(t *testing.T) {
		if got := lookup(t, "nope"+testenv.RandomHex(6)); len(got) != 0 {
			t.Errorf("got %+v, want no rows", got)
		}
	})
	t.Run("table hidden without tenant", func(t *testing.T) {
		var n int64
		if err := app.Unscoped(ctx).Raw("SELECT count(*) FROM api_keys WHERE prefix = ?", prefix).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("got %d api_keys rows without a tenant, want 0", n)
		}
	})
	t.Run("table hidden from another tenant", func(t *testing.T) {
		inTenant(t, app, b, func(tx *gorm.DB) error {
			var n int64
			if err := tx.Raw("SELECT count(*) FROM api_keys WHERE prefix = ?", prefix).Scan(&n).Error; err != nil {
				return err
			}
			if n != 0 {
				t.Errorf("got %d rows of tenant A's key as tenant B, want 0", n)
			}
			return nil
		})
	})
	t.Run("definer hygiene", func(t *testing.T) {
		var fn struct {
			Owner   string
			Definer bool
			Config  string
		}
		err := app.Unscoped(ctx).Raw(`
			SELECT pg_get_userbyid(p.proowner) AS owner, p.prosecdef AS definer,
			       coalesce(array_to_string(p.proconfig, ';'), '') AS config
			FROM pg_proc p WHERE p.oid = 'auth_api_key_lookup(text)'::regprocedure`).Scan(&fn).Error
		if err != nil {
			t.Fatal(err)
		}
		if !fn.Definer {
			t.Error("got SECURITY INVOKER, want SECURITY DEFINER")
		}
		if fn.Owner == "tenantd_app" {
			t.Errorf("got owner %s, want the owner role", fn.Owner)
		}
		if !strings.Contains(fn.Config, "search_path=") {
			t.Errorf("got proconfig %q, want a pinned search_path", fn.Config)
		}
	})
}
