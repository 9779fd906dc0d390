package events

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/testenv"
)

// TestHorizonUnderLoad checks the horizon against concurrent appenders
// that commit out of order, roll back, and take their xids early or late:
// every event at or below a settled position must have been visible when
// the position was reported settled.
func TestHorizonUnderLoad(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	owner, app := env.OpenOwnerDB(t), env.OpenDB(t, 10)
	// Run at least 3 s and until there is enough to judge (a loaded machine
	// is slower), but never more than 30 s.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	started := time.Now()
	var committed atomic.Int64
	tenant := testenv.NewTenant(t).ID
	errRollback := fmt.Errorf("roll back on purpose")
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				err := app.WithTenant(ctx, tenant, func(tx *gorm.DB) error {
					if i%2 == 0 { // an xid before the position, as a state change would give
						if err := tx.Exec("SELECT pg_current_xact_id()").Error; err != nil {
							return err
						}
					}
					if _, err := Append(ctx, tx, tenant, fmt.Sprintf("w%d-%d", w, i), 0,
						NewEvent{Type: "test.horizon", Data: i}); err != nil {
						return err
					}
					time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // the point: jitter between commits
					if i%5 == 0 {
						return errRollback
					}
					return nil
				})
				if err != nil && err != errRollback && ctx.Err() == nil {
					t.Errorf("append: %v", err)
					return
				}
				if err == nil {
					committed.Add(1)
				}
			}
		})
	}

	// What each settled position let a reader see at the time.
	type check struct {
		settled int64
		seen    map[int64]bool
	}
	var checks []check
	hz := &horizon{db: app}
	for ctx.Err() == nil {
		settled, _, err := hz.advance(ctx)
		if err != nil {
			break
		}
		var ps []int64
		if err := owner.Unscoped(ctx).Raw("SELECT position FROM events WHERE tenant_id = ? AND position <= ?",
			tenant, settled).Scan(&ps).Error; err != nil {
			break
		}
		seen := make(map[int64]bool, len(ps))
		for _, p := range ps {
			seen[p] = true
		}
		checks = append(checks, check{settled, seen})
		if time.Since(started) > 3*time.Second && len(checks) >= 150 && committed.Load() >= 150 {
			cancel()
		}
	}
	cancel()
	wg.Wait()

	var final []int64
	if err := owner.Unscoped(context.Background()).Raw("SELECT position FROM events WHERE tenant_id = ? ORDER BY position",
		tenant).Scan(&final).Error; err != nil {
		t.Fatal(err)
	}
	if len(final) < 100 || len(checks) < 100 {
		t.Fatalf("got %d events and %d checks, want at least 100 of each for the test to mean anything", len(final), len(checks))
	}
	bad := 0
	for _, c := range checks {
		for _, p := range final {
			if p > c.settled {
				break
			}
			if !c.seen[p] {
				bad++
				if bad <= 5 {
					t.Errorf("got position %d settled at %d before it was visible, want it visible", p, c.settled)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("got %d positions settled before they were visible, want none", bad)
	}
	t.Logf("%d events, %d checks, last settled %d", len(final), len(checks), checks[len(checks)-1].settled)
}
