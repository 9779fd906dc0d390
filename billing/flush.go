package billing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// Redis keys. Every key carries its tenant in braces (a hash tag), so on
// Redis Cluster all of a tenant's keys share a slot and the Lua push and
// RENAME stay single-slot.
const (
	usagePrefix    = "usage:"          // usage:{tenant}:YYYYMMDDHH, a hash of meter|currency → count
	flushingPrefix = "usage-flushing:" // usage-flushing:{tenant}:YYYYMMDDHH:<uuid v7>, taken by a flusher
	seqPrefix      = "usage-seq:"      // usage-seq:{tenant}:<replica>, the last push applied
	hourLayout     = "2006010215"
	usageKeyTTL    = 7 * 24 * time.Hour
	seqTTL         = 24 * time.Hour
	// flushesKept is how long usage_flushes remembers a flush: far longer
	// than any flushing key can live (usageKeyTTL).
	flushesKept = "30 days"
)

// pushScript adds one tenant's batch to its hourly hashes unless this
// replica already pushed a batch with that sequence number or a later one,
// so pushing a batch again never counts it twice.
//
//	KEYS[1]   usage-seq:{tenant}:<replica>
//	KEYS[2..] usage:{tenant}:<hour>
//	ARGV      seq, ttl seconds, then (key index, field, amount) triples
var pushScript = redis.NewScript(`
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= last then
  return 0
end
local ttl = tonumber(ARGV[2])
for i = 3, #ARGV, 3 do
  local key = KEYS[tonumber(ARGV[i])]
  redis.call('HINCRBY', key, ARGV[i + 1], ARGV[i + 2])
  redis.call('EXPIRE', key, ttl)
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
`)

// errRedisDown means Redis failed recently and is not tried again yet.
var errRedisDown = errors.New("redis is unavailable")

// flushHooks let tests stop a flusher between its steps.
type flushHooks struct {
	afterRename func(flushingKey string) error // after RENAME, before the transaction
	afterCommit func(flushingKey string) error // after COMMIT, before DEL
}

func usageKey(tenantID uuid.UUID, hour int64) string {
	return usagePrefix + "{" + tenantID.String() + "}:" + time.Unix(hour*3600, 0).UTC().Format(hourLayout)
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

// Run does the Counter's background work until ctx ends: it pushes counts
// to Redis every 100ms, writes them to PostgreSQL while Redis is down,
// flushes past hours from Redis every 30s, samples active_products every
// minute and prunes usage_flushes hourly. When ctx ends it flushes
// everything (Flush) before returning.
func (c *Counter) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		every(ctx, pushEvery, func() {
			if err := c.push(ctx, false); err != nil && !errors.Is(err, errRedisDown) {
				c.log.Debug("billing: push usage to redis", "err", err)
			}
		})
	})
	wg.Go(func() {
		every(ctx, directEvery, func() {
			if err := c.writeDirect(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("billing: write usage to postgres; will retry", "err", err)
			}
		})
	})
	wg.Go(func() {
		every(ctx, flushEvery, func() {
			if err := c.flushRedis(ctx, false); err != nil && ctx.Err() == nil {
				c.log.Warn("billing: flush usage from redis; will retry", "err", err)
			}
		})
	})
	wg.Go(func() {
		every(ctx, sampleEvery, func() {
			if err := c.SampleActiveProducts(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("billing: sample active products", "err", err)
			}
		})
	})
	wg.Go(func() {
		every(ctx, pruneEvery, func() {
			if err := c.prune(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("billing: prune usage flushes", "err", err)
			}
		})
	})
	wg.Wait()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
	defer cancel()
	if err := c.Flush(fctx); err != nil {
		c.log.Error("billing: final usage flush", "err", err)
	}
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// Flush moves every count this replica holds, and every count in Redis
// (the current hour's too), into usage_counters. Call it at shutdown after
// the HTTP server has stopped, and in tests. It is safe to call while Run
// runs, and on several replicas at once.
func (c *Counter) Flush(ctx context.Context) error {
	pushErr := c.push(ctx, true)
	if pushErr != nil {
		// Redis is down: what it may have applied cannot be known now.
		c.mu.Lock()
		if n := len(c.unknown); n > 0 {
			c.log.Warn("billing: writing usage batches of unknown outcome to postgres; they count twice if redis applied them and comes back with them", "batches", n)
			c.direct = append(c.direct, c.unknown...)
			c.unknown = nil
		}
		c.mu.Unlock()
	}
	c.directMu.Lock()
	err := c.writeDirectLocked(ctx, pushErr != nil)
	c.directMu.Unlock()
	if err != nil {
		return err
	}
	if pushErr != nil {
		return fmt.Errorf("flush usage from redis: %w", pushErr)
	}
	return c.flushRedis(ctx, true)
}

// redisUp reports whether counts should go to Redis: it has not failed, or
// it answers a PING again (tried at most once per probeEvery unless force).
func (c *Counter) redisUp(ctx context.Context, force bool) bool {
	c.mu.Lock()
	down, probeAt := c.down, c.probeAt
	c.mu.Unlock()
	if !down {
		return true
	}
	if !force && time.Now().Before(probeAt) {
		return false
	}
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		c.mu.Lock()
		c.probeAt = time.Now().Add(probeEvery)
		c.mu.Unlock()
		return false
	}
	c.mu.Lock()
	c.down = false
	c.mu.Unlock()
	c.log.Info("billing: redis answers again; counting usage there")
	return true
}

func (c *Counter) markDown(err error) {
	c.mu.Lock()
	was := c.down
	c.down, c.probeAt = true, time.Now().Add(probeEvery)
	c.mu.Unlock()
	if !was {
		c.log.Warn("billing: redis unavailable; counting usage in postgres until it answers", "err", err)
	}
}

// push sends the accumulator to Redis. Batches whose outcome is unknown go
// first: the sequence check applies each at most once, and a tenant's later
// batch must not reach Redis before them (it would raise the sequence past
// theirs). While any stays unknown, or Redis fails, the counts wait for
// writeDirect.
func (c *Counter) push(ctx context.Context, force bool) error {
	c.pushMu.Lock()
	defer c.pushMu.Unlock()
	if !c.redisUp(ctx, force) {
		return errRedisDown
	}
	c.mu.Lock()
	retry := c.unknown
	c.unknown = nil
	c.inflight = append(c.inflight, retry...)
	c.mu.Unlock()
	if len(retry) > 0 {
		failed, unknown, err := c.send(ctx, retry)
		c.mu.Lock()
		c.inflight = nil
		c.unknown = append(append(c.unknown, failed...), unknown...) // still unknown either way
		stuck := len(c.unknown) > 0
		c.mu.Unlock()
		if stuck {
			c.markDown(err)
			return fmt.Errorf("resolve usage batches: %w", err)
		}
	}
	bs := c.drain(true)
	if len(bs) == 0 {
		return nil
	}
	failed, unknown, err := c.send(ctx, bs)
	c.mu.Lock()
	c.inflight = nil
	c.direct = append(c.direct, failed...)
	c.unknown = append(c.unknown, unknown...)
	c.mu.Unlock()
	if err != nil {
		c.markDown(err)
		return fmt.Errorf("push usage: %w", err)
	}
	return nil
}

// drain takes the accumulator as batches under a new sequence number and
// lists them as in flight (toRedis) or to be written to PostgreSQL.
func (c *Counter) drain(toRedis bool) []*batch {
	bs := c.take()
	if len(bs) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	for _, b := range bs {
		b.seq = c.seq
	}
	if toRedis {
		c.inflight = append(c.inflight, bs...)
	} else {
		c.direct = append(c.direct, bs...)
	}
	return bs
}

// send pushes batches in one pipeline. It returns the batches Redis
// certainly did not apply, those it may have applied, and the first error.
func (c *Counter) send(ctx context.Context, bs []*batch) (failed, unknown []*batch, first error) {
	run := func(bs []*batch, eval bool) (noScript []*batch) {
		pipe := c.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(bs))
		for i, b := range bs {
			keys, args := b.scriptArgs(c.replica)
			if eval {
				cmds[i] = pushScript.Eval(ctx, pipe, keys, args...)
			} else {
				cmds[i] = pushScript.EvalSha(ctx, pipe, keys, args...)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			c.log.Debug("billing: usage push pipeline", "err", err) // classified per command below
		}
		for i, cmd := range cmds {
			err := cmd.Err()
			switch {
			case err == nil:
			case !eval && redis.HasErrorPrefix(err, "NOSCRIPT"):
				noScript = append(noScript, bs[i])
			case notSent(err):
				failed = append(failed, bs[i])
				first = firstErr(first, err)
			default:
				unknown = append(unknown, bs[i])
				first = firstErr(first, err)
			}
		}
		return noScript
	}
	if again := run(bs, false); len(again) > 0 {
		run(again, true)
	}
	return failed, unknown, first
}

func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// notSent reports whether a command that failed with err certainly did not
// run in Redis: no connection could be made, or Redis answered with an
// error. Anything else (a connection that broke after the write, a
// timeout) leaves the outcome unknown.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		return true
	}
	return errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout)
}

// scriptArgs returns pushScript's keys and arguments for b.
func (b *batch) scriptArgs(replica string) (keys []string, args []any) {
	keys = []string{seqPrefix + "{" + b.tenant.String() + "}:" + replica}
	index := map[int64]int{}
	args = []any{b.seq, int64(usageKeyTTL / time.Second)}
	for k, n := range b.counts {
		i, ok := index[k.hour]
		if !ok {
			keys = append(keys, usageKey(b.tenant, k.hour))
			i = len(keys)
			index[k.hour] = i
		}
		args = append(args, i, k.meter+"|"+k.currency, n)
	}
	return keys, args
}

// take empties the accumulator into one batch per tenant.
func (c *Counter) take() []*batch {
	byTenant := map[uuid.UUID]*batch{}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		counts := s.counts
		s.counts = nil
		s.mu.Unlock()
		for k, n := range counts {
			b := byTenant[k.tenant]
			if b == nil {
				b = &batch{tenant: k.tenant, counts: map[countKey]int64{}}
				byTenant[k.tenant] = b
			}
			b.counts[k] += n
		}
	}
	out := make([]*batch, 0, len(byTenant))
	for _, b := range byTenant {
		out = append(out, b)
	}
	return out
}

// writeDirect writes to PostgreSQL the batches Redis could not take and,
// while Redis is down, the accumulator.
func (c *Counter) writeDirect(ctx context.Context) error {
	c.directMu.Lock()
	defer c.directMu.Unlock()
	c.mu.Lock()
	down := c.down
	c.mu.Unlock()
	return c.writeDirectLocked(ctx, down)
}

// writeDirectLocked is writeDirect with directMu held; with drainAll the
// accumulator is written too.
func (c *Counter) writeDirectLocked(ctx context.Context, drainAll bool) error {
	if drainAll {
		c.drain(false)
	}
	c.mu.Lock()
	todo := slices.Clone(c.direct)
	c.mu.Unlock()
	var errs []error
	for _, b := range todo {
		err := c.writeBatch(ctx, b)
		if err != nil && !db.IsForeignKeyViolation(err) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			c.log.Warn("billing: dropping usage of a deleted tenant", "tenant_id", b.tenant)
		}
		c.mu.Lock()
		c.direct = slices.DeleteFunc(c.direct, func(x *batch) bool { return x == b })
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// writeBatch adds b to usage_counters once, however often it is retried:
// its name goes into usage_flushes in the same transaction.
func (c *Counter) writeBatch(ctx context.Context, b *batch) error {
	name := "direct:" + c.replica + ":" + strconv.FormatUint(b.seq, 10) + ":" + b.tenant.String()
	counts := make([]count, 0, len(b.counts))
	for k, n := range b.counts {
		counts = append(counts, count{meter: k.meter, currency: k.currency, hour: time.Unix(k.hour*3600, 0).UTC(), n: n})
	}
	return c.d.WithTenant(ctx, b.tenant, func(tx *gorm.DB) error {
		_, err := applyOnce(tx, b.tenant, name, counts)
		return err
	})
}

// flushRedis moves the hashes of past hours (all hours with current) from
// Redis into usage_counters, and finishes flushes that dead flushers left
// (any age with current, else older than leftoverAfter).
func (c *Counter) flushRedis(ctx context.Context, current bool) error {
	nowHour := c.now().Unix() / 3600
	var errs []error
	iter := c.rdb.Scan(ctx, 0, usagePrefix+"{*", 500).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		tenantID, hour, rest, ok := parseKey(key, usagePrefix)
		if !ok || rest != "" || (!current && hour.Unix()/3600 >= nowHour) {
			continue
		}
		id, err := uuid.NewV7()
		if err != nil {
			return fmt.Errorf("flushing key name: %w", err)
		}
		flushing := flushingPrefix + "{" + tenantID.String() + "}:" + hour.Format(hourLayout) + ":" + id.String()
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
		if err := c.applyFlushing(ctx, flushing, tenantID, hour); err != nil {
			errs = append(errs, err)
		}
	}
	if err := iter.Err(); err != nil {
		return errors.Join(append(errs, fmt.Errorf("scan usage keys: %w", err))...)
	}

	iter = c.rdb.Scan(ctx, 0, flushingPrefix+"{*", 500).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		tenantID, hour, rest, ok := parseKey(key, flushingPrefix)
		if !ok {
			continue
		}
		id, err := uuid.Parse(rest)
		if err != nil {
			continue
		}
		if sec, nsec := id.Time().UnixTime(); !current && time.Since(time.Unix(sec, nsec)) < leftoverAfter {
			continue // probably a live flusher's
		}
		if err := c.applyFlushing(ctx, key, tenantID, hour); err != nil {
			errs = append(errs, err)
		}
	}
	if err := iter.Err(); err != nil {
		errs = append(errs, fmt.Errorf("scan flushing keys: %w", err))
	}
	return errors.Join(errs...)
}

// applyFlushing adds the counts of a flushing key to usage_counters, once
// (its name goes into usage_flushes in the same transaction), and then
// deletes it.
func (c *Counter) applyFlushing(ctx context.Context, key string, tenantID uuid.UUID, hour time.Time) error {
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

// prune forgets flushes older than any flushing key can be.
func (c *Counter) prune(ctx context.Context) error {
	return c.d.Unscoped(ctx).Exec("DELETE FROM usage_flushes WHERE flushed_at < now() - interval '" + flushesKept + "'").Error
}
