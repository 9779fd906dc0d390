package gdpr

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// Eraser erases suspended tenants.
type Eraser struct {
	db    *db.DB
	rdb   *redis.Client
	cache CredentialCache
	log   *slog.Logger
	now   func() time.Time
}

// NewEraser returns an Eraser. rdb may be nil (no Redis keys to delete).
func NewEraser(d *db.DB, rdb *redis.Client, cache CredentialCache, log *slog.Logger) *Eraser {
	return &Eraser{db: d, rdb: rdb, cache: cache, log: log, now: time.Now}
}

// Erase removes every trace of the tenant but its tombstone and returns
// the receipt with its JSON encoding (whose SHA-256 the tombstone keeps).
// The tenant must be suspended (ErrNotSuspended) and confirm must be its
// slug (ErrConfirm); an unknown or already erased tenant is ErrNotFound.
//
// Order: the tenant's Redis keys first (they are counters and caches that
// a suspended tenant no longer feeds), then one transaction in the
// tenant's scope, through the worker role, whose one call of tenant_erase
// (migration 0028; the worker role's only) does all of this as the owner:
// the tenants row is locked and checked again, the audit head is read,
// every tenant table of the catalog is emptied of the tenant's rows,
// children before parents, then its casbin_rule rows and its tenants row
// are deleted and the tombstone written. Either all of that commits or
// none of it. An erasure that failed half-way through its
// Redis keys is simply run again.
func (e *Eraser) Erase(ctx context.Context, tenantID uuid.UUID, confirm string) (r Receipt, body []byte, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("erase tenant %s: %w", tenantID, err)
		}
	}()
	slug, status, err := e.lookup(ctx, tenantID)
	if err != nil {
		return Receipt{}, nil, err
	}
	if confirm != slug {
		return Receipt{}, nil, ErrConfirm
	}
	if status != "suspended" {
		return Receipt{}, nil, ErrNotSuspended
	}
	keys, err := DeleteRedisKeys(ctx, e.rdb, tenantID)
	if err != nil {
		return Receipt{}, nil, err
	}
	work := e.db.LongRunning().Worker()
	err = work.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		r, body, err = e.eraseRows(tx, tenantID, slug, keys)
		return err
	})
	if err != nil {
		return Receipt{}, nil, err
	}
	if e.cache != nil {
		e.cache.InvalidateTenant(ctx, tenantID)
	}
	e.log.InfoContext(ctx, "gdpr: tenant erased", "tenant_id", tenantID, "redis_keys", keys, "receipt_sha256", digest(body))
	return r, body, nil
}

// lookup returns the tenant's slug and status through the platform scope;
// ErrNotFound when it does not exist (or was erased).
func (e *Eraser) lookup(ctx context.Context, tenantID uuid.UUID) (slug, status string, err error) {
	err = e.db.WithPlatform(ctx, func(tx *gorm.DB) error {
		var rows []struct{ Slug, Status string }
		if err := tx.Raw("SELECT slug, status FROM tenants WHERE id = ?", tenantID).Scan(&rows).Error; err != nil {
			return fmt.Errorf("read tenant: %w", err)
		}
		if len(rows) == 0 {
			return ErrNotFound
		}
		slug, status = rows[0].Slug, rows[0].Status
		return nil
	})
	return slug, status, err
}

// eraseRows is Erase's transaction, in the tenant's scope. It may run
// again (db.WithTenant retries): it only sets what it returns.
//
// Every read and write is tenant_erase's (migration 0028), one call that
// runs as the owner: on Citus each role's statements go over connections
// of their own, and the worker role's writes next to the owner's ended in
// distributed deadlocks or were refused (25001). The function builds the
// receipt's JSON encoding, since the tombstone it writes keeps its
// SHA-256; receiptOf checks it is this package's encoding of a Receipt.
func (e *Eraser) eraseRows(tx *gorm.DB, tenantID uuid.UUID, slug string, redisKeys int64) (Receipt, []byte, error) {
	order, err := childrenFirst(tx)
	if err != nil {
		return Receipt{}, nil, err
	}
	tables := make([]string, len(order))
	for i, table := range order {
		tables[i] = pgx.Identifier{table}.Sanitize()
	}
	list, err := json.Marshal(tables) // one parameter (gorm expands a slice into a row)
	if err != nil {
		return Receipt{}, nil, fmt.Errorf("encode table list: %w", err)
	}
	erasedAt := e.now().UTC().Truncate(time.Microsecond)
	var body []string
	err = tx.Raw(`SELECT tenant_erase(?, ARRAY(SELECT e.t::regclass FROM json_array_elements_text(?::json) WITH ORDINALITY AS e(t, i) ORDER BY e.i), ?, ?)`,
		slug, string(list), redisKeys, erasedAt).Scan(&body).Error
	switch {
	case db.SQLState(err) == "P0002":
		return Receipt{}, nil, ErrNotFound
	case db.SQLState(err) == "55000":
		return Receipt{}, nil, ErrNotSuspended // reactivated meanwhile
	case db.SQLState(err) == "22023":
		return Receipt{}, nil, ErrConfirm // renamed meanwhile
	case err != nil:
		return Receipt{}, nil, fmt.Errorf("erase rows: %w", err)
	case len(body) != 1:
		return Receipt{}, nil, fmt.Errorf("erase rows: got %d receipts, want 1", len(body))
	}
	r, err := receiptOf([]byte(body[0]), tenantID, redisKeys, erasedAt)
	if err != nil {
		return Receipt{}, nil, err
	}
	return r, []byte(body[0]), nil
}

// receiptOf decodes the receipt tenant_erase encoded and checks it: the
// tenant, Redis key count and time it was given, and byte for byte the
// encoding json.Marshal gives the same Receipt (the tombstone keeps the
// SHA-256 of those bytes, which the response body is).
func receiptOf(body []byte, tenantID uuid.UUID, redisKeys int64, erasedAt time.Time) (Receipt, error) {
	var r Receipt
	if err := json.Unmarshal(body, &r); err != nil {
		return Receipt{}, fmt.Errorf("decode receipt: %w", err)
	}
	if r.TenantID != tenantID || r.RedisKeys != redisKeys || !r.ErasedAt.Equal(erasedAt) {
		return Receipt{}, fmt.Errorf("receipt %s: not the erasure of tenant %s with %d Redis keys at %s", body, tenantID, redisKeys, erasedAt)
	}
	want, err := json.Marshal(r)
	if err != nil {
		return Receipt{}, fmt.Errorf("encode receipt: %w", err)
	}
	if !bytes.Equal(body, want) {
		return Receipt{}, fmt.Errorf("receipt encoding: got %s from tenant_erase, want %s", body, want)
	}
	return r, nil
}

// digest is the lowercase hex SHA-256 of b.
func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// RedisKeyPattern is the SCAN pattern of a tenant's Redis keys. Every key
// tenantd keeps for a tenant carries its id, hash-tagged for Redis
// Cluster: rate:rl:{id}:<plan> (billing rate limits), tenantd:event_streams:{id}
// (open event streams), usage:{id}:… and usage-flushing:{id}:… (usage
// counts of earlier releases). Matching the id anywhere catches them and
// any later key of the tenant; ids are UUIDs, so nothing else matches.
func RedisKeyPattern(tenantID uuid.UUID) string { return "*" + tenantID.String() + "*" }

// redisScanCount is the COUNT hint of each SCAN step.
const redisScanCount = 500

// DeleteRedisKeys deletes every Redis key of the tenant (RedisKeyPattern),
// walking the key space with SCAN (never KEYS, which blocks Redis), and
// returns how many it deleted. A nil client has none.
func DeleteRedisKeys(ctx context.Context, rdb *redis.Client, tenantID uuid.UUID) (int64, error) {
	if rdb == nil {
		return 0, nil
	}
	var deleted int64
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, RedisKeyPattern(tenantID), redisScanCount).Result()
		if err != nil {
			return deleted, fmt.Errorf("scan redis keys: %w", err)
		}
		if len(keys) > 0 {
			n, err := rdb.Del(ctx, keys...).Result()
			if err != nil {
				return deleted, fmt.Errorf("delete redis keys: %w", err)
			}
			deleted += n
		}
		if next == 0 {
			return deleted, nil
		}
		cursor = next
	}
}
