package billing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// Usage that releases before durable metering kept in Redis: the hash
// usage:{tenant}:YYYYMMDDHH (field meter|currency → count), pushed there by
// each replica and moved into usage_counters by renaming it to a uniquely
// named usage-flushing:{tenant}:YYYYMMDDHH:<uuid v7> key, applying that
// name once (usage_flushes) and deleting it. This release writes no usage
// to Redis; it only drains such keys, so that nothing an older replica
// counted is lost during a rolling upgrade or after one crashed. Remove it
// once no older release runs anywhere.
const (
	legacyUsagePrefix    = "usage:"
	legacyFlushingPrefix = "usage-flushing:"
	hourLayout           = "2006010215"
	// flushesKept is how long usage_flushes remembers a flush: far longer
	// than any legacy key can live (the old release gave them 7 days).
	flushesKept = "30 days"
)

// flushHooks let tests stop a flush between its steps.
type flushHooks struct {
	afterRename func(flushingKey string) error // legacy drain: after RENAME, before the transaction
	afterCommit func(flushingKey string) error // legacy drain: after COMMIT, before DEL
	// afterFlush runs after a flush's transaction committed, before the
	// Counter forgets the flush; an error makes it look unanswered, as a
	// COMMIT whose reply was lost.
	afterFlush func(seq uint64) error
}

// parseKey splits prefix{tenant}:YYYYMMDDHH[:rest].
func parseKey(key, prefix string) (tenantID uuid.UUID, hour time.Time, rest string, ok bool) {
	s, found := strings.CutPrefix(key, prefix+"{")
	if !found || len(s) < 36+2+len(hourLayout) || s[36:38] != "}:" {
		return uuid.Nil, time.Time{}, "", false
	}
	tenantID, err := uuid.Parse(s[:36])
	if err != nil {
		return uuid.Nil, time.Time{}, "", false
	}
	s = s[38:]
	hour, err = time.Parse(hourLayout, s[:len(hourLayout)])
	if err != nil {
		return uuid.Nil, time.Time{}, "", false
	}
	s = s[len(hourLayout):]
	if s != "" {
		if rest, found = strings.CutPrefix(s, ":"); !found || rest == "" {
			return uuid.Nil, time.Time{}, "", false
		}
	}
	return tenantID, hour, rest, true
}

// drainLegacy moves every usage hash an earlier release left in Redis, the
// current hour's too, into usage_counters, and finishes the flushes its
// flushers left. An older replica still running may flush the same
// flushing key at once: its name in usage_flushes applies it once.
func (c *Counter) drainLegacy(ctx context.Context) error {
	if c.rdb == nil {
		return nil // no Redis given: nothing can have been left there
	}
	var errs []error
	iter := c.rdb.Scan(ctx, 0, legacyUsagePrefix+"{*", 500).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		tenantID, hour, rest, ok := parseKey(key, legacyUsagePrefix)
		if !ok || rest != "" {
			continue
		}
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("flushing key name: %w", err)
		}
		flushing := legacyFlushingPrefix + "{" + tenantID.String() + "}:" + hour.Format(hourLayout) + ":" + id.String()
		if err := c.rdb.Rename(ctx, key, flushing).Err(); err != nil {
			if redis.HasErrorPrefix(err, "no such key") {
				continue // another flusher took it
			}
			errs = append(errs, fmt.Errorf("take %s: %w", key, err))
			continue
		}
		if h := c.hooks.afterRename; h != nil {
			if err := h(flushing); err != nil {
				return err
			}
		}
		if err := c.applyLegacy(ctx, flushing, tenantID, hour); err != nil {
			errs = append(errs, err)
		}
	}
	if err := iter.Err(); err != nil {
		return errors.Join(append(errs, fmt.Errorf("scan usage keys: %w", err))...)
	}

	iter = c.rdb.Scan(ctx, 0, legacyFlushingPrefix+"{*", 500).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		tenantID, hour, rest, ok := parseKey(key, legacyFlushingPrefix)
		if !ok {
			continue
		}
		if _, err := uuid.Parse(rest); err != nil {
			continue
		}
		if err := c.applyLegacy(ctx, key, tenantID, hour); err != nil {
			errs = append(errs, err)
		}
	}
	if err := iter.Err(); err != nil {
		errs = append(errs, fmt.Errorf("scan flushing keys: %w", err))
	}
	return errors.Join(errs...)
}

// applyLegacy adds the counts of a flushing key to usage_counters, once
// (its name goes into usage_flushes in the same transaction), and then
// deletes it.
func (c *Counter) applyLegacy(ctx context.Context, key string, tenantID uuid.UUID, hour time.Time) error {
	fields, err := c.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if len(fields) > 0 {
		counts := make([]count, 0, len(fields))
		for f, v := range fields {
			meter, currency, _ := strings.Cut(f, "|")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || meter == "" || n < 0 {
				c.log.Error("billing: unreadable usage count skipped", "key", key, "field", f, "value", v)
				continue
			}
			if n > 0 {
				counts = append(counts, count{meter: meter, currency: currency, hour: hour, n: n})
			}
		}
		err = c.d.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
			_, err := applyOnce(tx, tenantID, key, counts)
			return err
		})
		if db.IsForeignKeyViolation(err) {
			c.log.Warn("billing: dropping usage of a deleted tenant", "tenant_id", tenantID, "key", key)
		} else if err != nil {
			return fmt.Errorf("flush %s: %w", key, err)
		}
		if h := c.hooks.afterCommit; h != nil {
			if err := h(key); err != nil {
				return err
			}
		}
	}
	if err := c.rdb.Del(ctx, key).Err(); err != nil {
		return fmt.Errorf("delete flushed %s: %w", key, err)
	}
	return nil
}
