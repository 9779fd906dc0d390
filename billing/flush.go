package billing

import (
	"bytes"
	"context"
	"fmt"
	"github.com/tenantd/tenantd/internal/wait"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

// flushKey is this replica's row in usage_flushes: applied_seq there is the
// number of the last flush of this replica that usage_counters holds.
func (c *Counter) flushKey() string { return "replica:" + c.replica }

// Run does the Counter's background work until ctx ends: it writes the
// counts to usage_counters every second, samples active_products every
// minute, drains usage an earlier release left in Redis (at start, then
// every 10 minutes) and prunes usage_flushes hourly. When ctx ends it
// flushes what it still holds (Flush) before returning.
func (c *Counter) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		wait.Every(ctx, flushEvery, func() {
			if err := c.flushOnce(ctx); err != nil && ctx.Err() == nil {
				c.failed(err)
			}
		})
	})
	wg.Go(func() {
		wait.Every(ctx, sampleEvery, func() {
			if err := c.SampleActiveProducts(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("billing: sample active products", "err", err)
			}
		})
	})
	wg.Go(func() {
		drain := func() {
			if err := c.drainLegacy(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("billing: drain usage left in redis by an earlier release; will retry", "err", err)
			}
		}
		drain()
		wait.Every(ctx, legacyEvery, drain)
	})
	wg.Go(func() {
		wait.Every(ctx, pruneEvery, func() {
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

// failed logs a flush that failed: the first of a series, then every
// tenth, so an outage of PostgreSQL does not log every second.
func (c *Counter) failed(err error) {
	c.flushMu.Lock()
	n := c.failures
	c.flushMu.Unlock()
	if n == 1 || n%10 == 0 {
		c.log.Warn("billing: write usage to postgres; counts stay in memory and are retried every second",
			"failures_in_a_row", n, "err", err)
	}
}

// Flush writes every count this replica holds to usage_counters, retrying
// while PostgreSQL fails, until ctx ends. Call it at shutdown after the
// HTTP server has stopped (it needs no Redis), and in tests. It is safe to
// call while Run runs.
func (c *Counter) Flush(ctx context.Context) error {
	pause := 50 * time.Millisecond
	for {
		err := c.flushOnce(ctx)
		if err == nil {
			return nil
		}
		if !wait.Sleep(ctx, pause) {
			return fmt.Errorf("flush usage: %w (gave up: %w)", err, ctx.Err())
		}
		pause = min(2*pause, time.Second)
	}
}

// flushOnce writes the pending flushes, oldest first, and then what the
// accumulator holds as a new flush. While an older flush is pending (its
// write failed, or its outcome is unknown), new counts stay in the
// accumulator, where they merge: memory stays bounded however long
// PostgreSQL is away.
func (c *Counter) flushOnce(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	for {
		c.mu.Lock()
		retry := len(c.pending) > 0
		if !retry {
			c.pending = c.takeLocked()
		}
		todo := slices.Clone(c.pending)
		c.mu.Unlock()
		for _, f := range todo {
			if err := c.write(ctx, f); err != nil {
				c.failures++
				return err
			}
			c.mu.Lock()
			c.pending = slices.DeleteFunc(c.pending, func(p *flush) bool { return p == f })
			c.mu.Unlock()
		}
		if c.failures > 0 {
			c.log.Info("billing: usage written to postgres again", "failures_in_a_row", c.failures)
			c.failures = 0
		}
		if !retry {
			return nil
		}
	}
}

// takeLocked empties the accumulator into new flushes of at most
// maxFlushTenants tenants each, numbered in order. c.mu must be held.
func (c *Counter) takeLocked() []*flush {
	byTenant := map[uuid.UUID][]count{}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		counts := s.counts
		s.counts = nil
		s.mu.Unlock()
		for k, n := range counts {
			byTenant[k.tenant] = append(byTenant[k.tenant], count{meter: k.meter, currency: k.currency,
				hour: time.Unix(k.hour*3600, 0).UTC(), n: n})
		}
	}
	if len(byTenant) == 0 {
		return nil
	}
	batches := make([]batch, 0, len(byTenant))
	for id, counts := range byTenant {
		batches = append(batches, batch{tenant: id, counts: counts})
	}
	// Every flush of every replica writes tenants in id order (PostgreSQL
	// orders uuids bytewise too), so flushes that touch the same rows queue
	// instead of deadlocking.
	slices.SortFunc(batches, func(a, b batch) int { return bytes.Compare(a.tenant[:], b.tenant[:]) })
	var out []*flush
	for chunk := range slices.Chunk(batches, maxFlushTenants) {
		c.seq++
		out = append(out, &flush{seq: c.seq, batches: chunk})
	}
	return out
}

// write applies f to usage_counters exactly once. In one transaction it
// raises this replica's applied_seq in usage_flushes to f.seq, which
// succeeds only if f is not applied yet, and then adds each tenant's counts
// under that tenant's row-level security. A write retried after a COMMIT
// whose reply was lost finds f.seq recorded and adds nothing. This relies
// on a replica writing its flushes one at a time and in order (flushMu,
// and a flush is dropped only once it is known to be applied).
//
// One transaction serves many tenants: for each, it sets the tenant (as
// db.SetTenant does) and then upserts its counts, so row-level security
// admits only that tenant's rows. It runs on a pool connection through pgx
// itself, to send those statements as one pipelined batch: four round trips
// a flush (BEGIN, the applied_seq and period reads, the tenants, COMMIT),
// however many tenants, each statement prepared once per connection. The
// pool's lock, statement and idle-in-transaction timeouts apply. A tenant
// deleted since it was counted is skipped and its counts dropped.
func (c *Counter) write(ctx context.Context, f *flush) error {
	sqlDB, err := c.d.Unscoped(ctx).DB()
	if err != nil {
		return fmt.Errorf("write usage flush %d: %w", f.seq, err)
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("write usage flush %d: %w", f.seq, err)
	}
	defer conn.Close()
	applied := false
	var gone []uuid.UUID
	err = conn.Raw(func(driverConn any) error {
		dc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("unexpected database driver %T", driverConn)
		}
		return pgx.BeginFunc(ctx, dc.Conn(), func(tx pgx.Tx) error {
			applied, gone = false, nil
			var first pgx.Batch
			// flushed_at from EXCLUDED, now() in VALUES: Citus evaluates
			// the VALUES on the coordinator and refuses a non-IMMUTABLE
			// function in DO UPDATE SET.
			first.Queue(`INSERT INTO usage_flushes (flush_key, applied_seq, flushed_at) VALUES ($1, $2, now())
				ON CONFLICT (flush_key) DO UPDATE SET applied_seq = EXCLUDED.applied_seq, flushed_at = EXCLUDED.flushed_at
				WHERE usage_flushes.applied_seq < EXCLUDED.applied_seq`, c.flushKey(), int64(f.seq))
			first.Queue(lockCountersSQL)
			first.Queue(closedPeriodsSQL)
			br := tx.SendBatch(ctx, &first)
			tag, err := br.Exec()
			if err != nil {
				br.Close() //nolint:errcheck // the first error is the one to report
				return fmt.Errorf("record flush %d: %w", f.seq, err)
			}
			if _, err := br.Exec(); err != nil {
				br.Close() //nolint:errcheck // as above
				return fmt.Errorf("lock usage_counters: %w", err)
			}
			rows, err := br.Query()
			if err != nil {
				br.Close() //nolint:errcheck // as above
				return fmt.Errorf("read closed periods: %w", err)
			}
			closed, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				br.Close() //nolint:errcheck // as above
				return fmt.Errorf("read closed periods: %w", err)
			}
			if err := br.Close(); err != nil {
				return fmt.Errorf("record flush %d: %w", f.seq, err)
			}
			if tag.RowsAffected() == 0 {
				return nil // applied by an earlier attempt
			}
			p := newPeriods(closed)

			var counts pgx.Batch
			for _, b := range f.batches {
				counts.Queue("SELECT app_bind_tenant($1)", b.tenant.String())
				st := statement{dollar: true}
				if err := st.upsert(p, b.tenant, b.counts, true); err != nil {
					return fmt.Errorf("tenant %s: %w", b.tenant, err)
				}
				counts.Queue(st.sql.String(), st.args...)
			}
			br = tx.SendBatch(ctx, &counts)
			for _, b := range f.batches {
				if _, err := br.Exec(); err != nil {
					br.Close() //nolint:errcheck // as above
					return fmt.Errorf("set tenant %s: %w", b.tenant, err)
				}
				tag, err := br.Exec()
				if err != nil {
					br.Close() //nolint:errcheck // as above
					return fmt.Errorf("add usage counts of %s: %w", b.tenant, err)
				}
				if tag.RowsAffected() == 0 {
					gone = append(gone, b.tenant)
				}
			}
			if err := br.Close(); err != nil {
				return fmt.Errorf("add usage counts: %w", err)
			}
			applied = true
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("write usage flush %d: %w", f.seq, err)
	}
	if h := c.hooks.afterFlush; h != nil {
		if err := h(f.seq); err != nil {
			return err
		}
	}
	if !applied {
		c.duplicates.Add(1)
		c.log.Info("billing: usage flush retried after an unanswered commit was applied already; not counted again", "seq", f.seq)
	}
	for _, id := range gone {
		c.log.Warn("billing: dropping usage of a deleted tenant", "tenant_id", id)
	}
	return nil
}

// appliedSeq reads, in tx, the number of this replica's last flush that
// usage_counters holds (0 if none). See unflushed for when to call it.
func (c *Counter) appliedSeq(ctx context.Context, tx *gorm.DB) (uint64, error) {
	var seq []int64
	err := tx.WithContext(ctx).Raw("SELECT applied_seq FROM usage_flushes WHERE flush_key = ?", c.flushKey()).Scan(&seq).Error
	if err != nil {
		return 0, fmt.Errorf("read applied usage flush: %w", err)
	}
	if len(seq) == 0 || seq[0] <= 0 {
		return 0, nil
	}
	return uint64(seq[0]), nil
}

// prune forgets flushes older than any retry of them can be: the names of
// drained Redis keys, and the rows of replicas that have not flushed for
// as long (a live replica's row comes back with its next flush).
func (c *Counter) prune(ctx context.Context) error {
	return c.d.Unscoped(ctx).Exec("DELETE FROM usage_flushes WHERE flushed_at < now() - interval '" + flushesKept + "'").Error
}
