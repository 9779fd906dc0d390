package gdpr_test

import (
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/db"
)

// catalogTables lists the tenant tables as the catalog has them (the same
// query as internal/db's catalog test).
func catalogTables(t *testing.T, owner *db.DB) []string {
	t.Helper()
	var names []string
	if err := owner.Unscoped(t.Context()).Raw(`
		SELECT c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attname = 'tenant_id' AND NOT a.attisdropped
		ORDER BY 1`).Scan(&names).Error; err != nil {
		t.Fatalf("list tenant tables: %v", err)
	}
	if len(names) < 10 {
		t.Fatalf("got tenant tables %v, want the catalog's", names)
	}
	return names
}

// rowCounts returns the tenant's rows per catalog table, plus its
// casbin_rule rows and its tenants row, read as the owner in the tenant's
// scope.
func rowCounts(t *testing.T, owner *db.DB, tenantID string) map[string]int64 {
	t.Helper()
	id := uuid.MustParse(tenantID)
	out := map[string]int64{}
	tables := catalogTables(t, owner)
	err := owner.WithTenant(t.Context(), id, func(tx *gorm.DB) error {
		for _, table := range tables {
			var n int64
			if err := tx.Raw("SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()+" WHERE tenant_id = ?", id).Scan(&n).Error; err != nil {
				return err
			}
			out[table] = n
		}
		var n int64
		if err := tx.Raw("SELECT count(*) FROM casbin_rule WHERE v1 = ?", tenantID).Scan(&n).Error; err != nil {
			return err
		}
		out["casbin_rule"] = n
		return tx.Raw("SELECT count(*) FROM tenants WHERE id = ?", id).Scan(&n).Error
	})
	if err != nil {
		t.Fatalf("count rows of %s: %v", tenantID, err)
	}
	var n int64
	if err := owner.WithPlatform(t.Context(), func(tx *gorm.DB) error {
		return tx.Raw("SELECT count(*) FROM tenants WHERE id = ?", id).Scan(&n).Error
	}); err != nil {
		t.Fatal(err)
	}
	out["tenants"] = n
	return out
}

// populate gives the tenant rows in many tables through the API: a custom
// role (casbin_rule), an API key (made with an Idempotency-Key, so that its
// one-time secret sits in idempotency_keys), a product, an order
// (events, reservations, order_views), a payment, a webhook endpoint with
// a test delivery. It returns the secrets shown once.
func populate(t *testing.T, s *apptest.Server, tn apptest.Tenant) (secrets []string) {
	t.Helper()
	do := func(method, path string, body any, want int, header map[string]string) map[string]any {
		t.Helper()
		resp := s.Do(apptest.Request{Method: method, Path: path, Key: tn.Key, Body: body, Header: header})
		if resp.Status != want {
			t.Fatalf("%s %s: got %d %s, want %d", method, path, resp.Status, resp.Body, want)
		}
		return resp.Map(t)
	}
	do("POST", "/v1/roles", map[string]any{"name": "auditor", "permissions": []string{"audit:read", "products:read"}}, http.StatusCreated, nil)
	key := do("POST", "/v1/api-keys", map[string]any{"name": "gdpr", "roles": []string{"viewer"}}, http.StatusCreated,
		map[string]string{"Idempotency-Key": "gdpr-" + apptest.Slug("k")})
	product := do("POST", "/v1/products", map[string]any{"sku": "GDPR-1", "name": "Thing", "price": 500, "currency": "EUR", "stock": 10},
		http.StatusCreated, nil)
	order := do("POST", "/v1/orders", map[string]any{"customer_id": "c-" + tn.Slug,
		"items": []map[string]any{{"product_id": product["id"], "quantity": 2}}}, http.StatusCreated, nil)
	do("POST", "/v1/payments", map[string]any{"order_id": order["id"], "amount": order["total"], "currency": "EUR",
		"payment_method": "card"}, http.StatusCreated, nil)
	hook := do("POST", "/v1/webhooks", map[string]any{"url": "https://hooks.example.invalid/" + tn.Slug, "event_types": []string{"*"}},
		http.StatusCreated, nil)
	do("POST", "/v1/webhooks/"+hook["id"].(string)+"/test", nil, http.StatusAccepted, nil)
	return []string{key["secret"].(string), hook["secret"].(string), tn.Key}
}
