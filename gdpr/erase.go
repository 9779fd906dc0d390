package gdpr

import (
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
// tenant's scope, through the worker role (tenant_erase_rows is its only):
// the audit head is read, every tenant table of the catalog is emptied of
// the tenant's rows, children before parents, then its casbin_rule rows
// and its tenants row are deleted and the tombstone written. Either all of
// that commits or none of it. An erasure that failed half-way through its
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
func (e *Eraser) eraseRows(tx *gorm.DB, tenantID uuid.UUID, slug string, redisKeys int64) (Receipt, []byte, error) {
	var cur []struct{ Slug, Status string }
	if err := tx.Raw("SELECT slug, status FROM tenants WHERE id = ? FOR UPDATE", tenantID).Scan(&cur).Error; err != nil {
		return Receipt{}, nil, fmt.Errorf("lock tenant: %w", err)
	}
	switch {
	case len(cur) == 0:
		return Receipt{}, nil, ErrNotFound
	case cur[0].Status != "suspended":
		return Receipt{}, nil, ErrNotSuspended // reactivated meanwhile
	case cur[0].Slug != slug:
		return Receipt{}, nil, ErrConfirm // renamed meanwhile
	}
	r := Receipt{TenantID: tenantID, Tables: map[string]int64{}, RedisKeys: redisKeys}
	head, err := auditHead(tx, tenantID)
	if err != nil {
		return Receipt{}, nil, err
	}
	r.AuditHead = head
	order, err := childrenFirst(tx)
	if err != nil {
		return Receipt{}, nil, err
	}
	for _, table := range order {
		var n int64
		if err := tx.Raw("SELECT tenant_erase_rows(?::regclass)", pgx.Identifier{table}.Sanitize()).Scan(&n).Error; err != nil {
			return Receipt{}, nil, fmt.Errorf("erase %s: %w", table, err)
		}
		r.Tables[table] = n
	}
	// casbin_rule has no tenant_id: the tenant's rules are those of its
	// domain (migration 0018 lets the tenant's transaction delete them).
	res := tx.Exec("DELETE FROM casbin_rule WHERE v1 = ?", tenantID.String())
	if res.Error != nil {
		return Receipt{}, nil, fmt.Errorf("erase casbin_rule: %w", res.Error)
	}
	r.Tables["casbin_rule"] = res.RowsAffected
	res = tx.Exec("DELETE FROM tenants WHERE id = ?", tenantID)
	if res.Error != nil {
		return Receipt{}, nil, fmt.Errorf("erase tenants: %w", res.Error)
	}
	if res.RowsAffected != 1 {
		return Receipt{}, nil, fmt.Errorf("erase tenants: deleted %d rows, want 1", res.RowsAffected)
	}
	r.Tables["tenants"] = res.RowsAffected
	r.ErasedAt = e.now().UTC().Truncate(time.Microsecond)
	body, err := json.Marshal(r)
	if err != nil {
		return Receipt{}, nil, fmt.Errorf("encode receipt: %w", err)
	}
	if err := tx.Exec(`INSERT INTO tenant_tombstones (id, slug, erased_at, receipt_sha256) VALUES (?, ?, ?, ?)`,
		tenantID, slug, r.ErasedAt, digest(body)).Error; err != nil {
		return Receipt{}, nil, fmt.Errorf("write tombstone: %w", err)
	}
	return r, body, nil
}

// genesisHash is the prev_hash of an audit chain's first link
// (internal/audit): the head of a chain with no sealed link.
var genesisHash = hex.EncodeToString(make([]byte, sha256.Size))

// auditHead returns the tenant's last sealed audit link. Rows not sealed
// yet are erased with the rest; they were never part of the chain.
func auditHead(tx *gorm.DB, tenantID uuid.UUID) (AuditHead, error) {
	var rows []struct {
		Seq  int64
		Hash []byte
	}
	if err := tx.Raw(`SELECT seq, hash FROM audit_events WHERE tenant_id = ? AND hash IS NOT NULL
		ORDER BY seq DESC LIMIT 1`, tenantID).Scan(&rows).Error; err != nil {
		return AuditHead{}, fmt.Errorf("read audit head: %w", err)
	}
	if len(rows) == 0 {
		return AuditHead{Seq: 0, Hash: genesisHash}, nil
	}
	return AuditHead{Seq: rows[0].Seq, Hash: hex.EncodeToString(rows[0].Hash)}, nil
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
