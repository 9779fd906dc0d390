package gdpr_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/gdpr"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// redisKeysOf lists the tenant's Redis keys (SCAN, as erasure does).
func redisKeysOf(t *testing.T, rdb *redis.Client, tenantID string) []string {
	t.Helper()
	var keys []string
	iter := rdb.Scan(t.Context(), 0, gdpr.RedisKeyPattern(uuid.MustParse(tenantID)), 100).Iterator()
	for iter.Next(t.Context()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestErase (issue 12, part 3): erasing a suspended tenant removes its
// rows from every table of the catalog, its Casbin rules, its Redis keys
// and its tenants row, answers a receipt whose SHA-256 its tombstone
// keeps, and changes nothing of another tenant. The id can never be a
// tenant's again; the slug can.
func TestErase(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	owner := s.Env.OpenOwnerDB(t)
	rdb := s.Env.RedisClient(t)
	ctx := t.Context()
	victim := s.NewTenant("erase", "pro")
	other := s.NewTenant("keep", "pro")
	populate(t, s, victim)
	populate(t, s, other)
	// Keys of every kind tenantd keeps per tenant (rate limits come from
	// the requests above): open event streams, and usage counts of
	// earlier releases.
	for _, id := range []string{victim.ID, other.ID} {
		for _, k := range []string{"tenantd:event_streams:{" + id + "}", "usage:{" + id + "}:2026010100", "usage-flushing:{" + id + "}:2026010100:x"} {
			if err := rdb.Set(ctx, k, "1", time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	op := func(method, path string, body any) apptest.Response {
		return s.Do(apptest.Request{Method: method, Path: path, Key: apptest.OperatorKey, Body: body})
	}
	erasePath := "/admin/v1/tenants/" + victim.ID + "?confirm=" + victim.Slug

	t.Run("an active tenant is not erased", func(t *testing.T) {
		if resp := op("DELETE", erasePath, nil); resp.Status != http.StatusConflict || resp.Code() != "conflict" {
			t.Fatalf("got %d %s, want 409 conflict", resp.Status, resp.Body)
		}
	})
	// Both tenants' webhook endpoints are disabled, so that no retry adds
	// attempts meanwhile (the victim's while it is still active, through
	// its own key); their rows settle (projections) before the snapshots
	// below.
	disableWebhooks(t, s, victim)
	disableWebhooks(t, s, other)
	if resp := op("PATCH", "/admin/v1/tenants/"+victim.ID, map[string]any{"status": "suspended"}); resp.Status != http.StatusOK {
		t.Fatalf("suspend: got %d %s", resp.Status, resp.Body)
	}
	t.Run("confirm must be the slug", func(t *testing.T) {
		for _, q := range []string{"", "?confirm=", "?confirm=" + other.Slug} {
			resp := op("DELETE", "/admin/v1/tenants/"+victim.ID+q, nil)
			if resp.Status != http.StatusUnprocessableEntity || resp.Code() != "validation_failed" {
				t.Errorf("confirm %q: got %d %s, want 422 validation_failed", q, resp.Status, resp.Body)
			}
		}
	})
	t.Run("unknown tenant", func(t *testing.T) {
		if resp := op("DELETE", "/admin/v1/tenants/"+uuid.NewString()+"?confirm=x", nil); resp.Status != http.StatusNotFound {
			t.Fatalf("got %d %s, want 404", resp.Status, resp.Body)
		}
	})

	// Usage counted in memory reaches usage_counters before the counts.
	if err := s.App.Usage.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var before, otherBefore map[string]int64
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		a, oa := rowCounts(t, owner, victim.ID), rowCounts(t, owner, other.ID)
		time.Sleep(1500 * time.Millisecond)
		before, otherBefore = rowCounts(t, owner, victim.ID), rowCounts(t, owner, other.ID)
		return maps.Equal(a, before) && maps.Equal(oa, otherBefore), "the tenants' rows keep changing"
	})
	for _, table := range []string{"api_keys", "audit_events", "events", "products", "order_views", "payments", "webhook_endpoints", "casbin_rule", "tenants"} {
		if before[table] == 0 {
			t.Fatalf("the victim has no rows in %s before erasure, want some (fixture)", table)
		}
	}
	if len(redisKeysOf(t, rdb, victim.ID)) < 3 {
		t.Fatalf("the victim has Redis keys %v, want at least the 3 set above", redisKeysOf(t, rdb, victim.ID))
	}
	otherKeys := redisKeysOf(t, rdb, other.ID)

	resp := op("DELETE", erasePath, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("erase: got %d %s, want 200", resp.Status, resp.Body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q, want application/json", ct)
	}
	var receipt gdpr.Receipt
	resp.JSON(t, &receipt)

	t.Run("receipt", func(t *testing.T) {
		if receipt.TenantID.String() != victim.ID {
			t.Errorf("tenant_id: got %s, want %s", receipt.TenantID, victim.ID)
		}
		for table, n := range before {
			if receipt.Tables[table] != n {
				t.Errorf("tables[%s]: got %d, want %d (the rows it had)", table, receipt.Tables[table], n)
			}
		}
		if len(receipt.Tables) != len(before) {
			t.Errorf("tables: got %d entries %v, want %d", len(receipt.Tables), receipt.Tables, len(before))
		}
		if receipt.RedisKeys < 3 {
			t.Errorf("redis_keys: got %d, want at least 3", receipt.RedisKeys)
		}
		if receipt.AuditHead.Seq < 1 || len(receipt.AuditHead.Hash) != 64 {
			t.Errorf("audit_head: got %+v, want the sealed head of a chain with entries", receipt.AuditHead)
		}
		if time.Since(receipt.ErasedAt) > time.Minute {
			t.Errorf("erased_at: got %s, want now", receipt.ErasedAt)
		}
	})
	t.Run("every catalog table holds 0 rows of the tenant", func(t *testing.T) {
		for table, n := range rowCounts(t, owner, victim.ID) {
			if n != 0 {
				t.Errorf("%s: got %d rows, want 0", table, n)
			}
		}
	})
	t.Run("Redis keys gone", func(t *testing.T) {
		if keys := redisKeysOf(t, rdb, victim.ID); len(keys) != 0 {
			t.Errorf("got keys %v, want none", keys)
		}
	})
	t.Run("nothing else changed", func(t *testing.T) {
		if after := rowCounts(t, owner, other.ID); !maps.Equal(after, otherBefore) {
			t.Errorf("the other tenant's rows: got %v, want %v", after, otherBefore)
		}
		for _, k := range otherKeys {
			if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 1 {
				t.Errorf("the other tenant's key %s: got exists=%d %v, want it kept", k, n, err)
			}
		}
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: other.Key}); resp.Status != http.StatusOK {
			t.Errorf("the other tenant: got %d %s, want 200", resp.Status, resp.Body)
		}
	})
	t.Run("tombstone", func(t *testing.T) {
		var stones []struct {
			Slug          string
			ErasedAt      time.Time
			ReceiptSha256 string
		}
		if err := owner.WithPlatform(ctx, func(tx *gorm.DB) error {
			return tx.Raw("SELECT slug, erased_at, receipt_sha256 FROM tenant_tombstones WHERE id = ?", victim.ID).Scan(&stones).Error
		}); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(resp.Body)
		if len(stones) != 1 || stones[0].Slug != victim.Slug || stones[0].ReceiptSha256 != hex.EncodeToString(sum[:]) ||
			!stones[0].ErasedAt.Equal(receipt.ErasedAt) {
			t.Fatalf("got tombstones %+v, want one with slug %s, erased_at %s and the SHA-256 of the receipt %x",
				stones, victim.Slug, receipt.ErasedAt, sum)
		}
	})
	t.Run("credentials gone", func(t *testing.T) {
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant", Key: victim.Key}); resp.Status != http.StatusUnauthorized {
			t.Errorf("the erased tenant's key: got %d %s, want 401", resp.Status, resp.Body)
		}
	})
	t.Run("erased twice", func(t *testing.T) {
		if resp := op("DELETE", erasePath, nil); resp.Status != http.StatusNotFound {
			t.Errorf("got %d %s, want 404", resp.Status, resp.Body)
		}
	})
	t.Run("the id is never a tenant's again", func(t *testing.T) {
		err := owner.WithPlatform(ctx, func(tx *gorm.DB) error {
			return tx.Exec(`INSERT INTO tenants (id, slug, name, plan) VALUES (?, ?, 'Again', 'free')`, victim.ID, apptest.Slug("again")).Error
		})
		var pg *pgconn.PgError
		// db.IsUniqueViolation: on Citus the trigger runs on a worker, whose
		// error arrives without the constraint field; its message names it.
		if !db.IsUniqueViolation(err, "tenant_tombstones_pkey") {
			t.Fatalf("got %v, want a unique violation on tenant_tombstones_pkey", err)
		}
		err = owner.WithPlatform(ctx, func(tx *gorm.DB) error {
			return tx.Exec(`UPDATE tenants SET id = ? WHERE id = ?`, victim.ID, other.ID).Error
		})
		if !errors.As(err, &pg) || pg.Code != "23505" {
			t.Fatalf("renumbering a tenant to the erased id: got %v, want a unique violation", err)
		}
	})
	t.Run("the slug may be taken again", func(t *testing.T) {
		again := s.CreateTenant(victim.Slug, "free")
		if again.ID == victim.ID {
			t.Fatalf("got the erased id %s again", again.ID)
		}
	})
}

// disableWebhooks disables every webhook endpoint of tn, through its own
// key.
func disableWebhooks(t *testing.T, s *apptest.Server, tn apptest.Tenant) {
	t.Helper()
	hooks := s.Do(apptest.Request{Method: "GET", Path: "/v1/webhooks", Key: tn.Key}).Map(t)["data"].([]any)
	for _, h := range hooks {
		path := "/v1/webhooks/" + h.(map[string]any)["id"].(string)
		if resp := s.Do(apptest.Request{Method: "PATCH", Path: path, Key: tn.Key, Body: map[string]any{"status": "disabled"}}); resp.Status != http.StatusOK {
			t.Fatalf("disable webhook %s of %s: got %d %s", path, tn.Slug, resp.Status, resp.Body)
		}
	}
}
