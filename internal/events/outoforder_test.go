package events_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestOutOfOrderCommit proves the dispatcher never moves past an event
// whose transaction is still open: tx1 appends first (the earlier
// position) and stays open, tx2 appends later and commits; the dispatcher
// delivers nothing and keeps its checkpoint below tx1's position until tx1
// ends, then delivers both in position order (or only tx2's, if tx1 rolls
// back). It does not run in parallel: its open transaction holds back every
// dispatcher in the package, which is the point.
func TestOutOfOrderCommit(t *testing.T) {
	env := testenv.Get(t)
	owner, app := env.OpenOwnerDB(t), env.OpenDB(t, 6)

	tests := []struct {
		name string
		// olderXID makes tx2 take its transaction id before tx1 does, as a
		// transaction that writes its state before appending would: a
		// reader filtering on "txid < xmin" alone would then skip tx1.
		olderXID bool
		commit1  bool
	}{
		{"later append commits first", false, true},
		{"later append from an older transaction commits first", true, true},
		{"earlier append rolls back", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			tenant := testenv.NewTenant(t).ID
			typ := eventType(t)

			var (
				mu      sync.Mutex
				handled []uuid.UUID
			)
			d := events.NewDispatcher(app, testLogger(), events.Options{PollInterval: 20 * time.Millisecond})
			sub := "ooo-" + testenv.RandomHex(4)
			d.Subscribe(sub, []string{typ}, func(_ context.Context, _ *gorm.DB, e events.Event) error {
				mu.Lock()
				defer mu.Unlock()
				handled = append(handled, e.ID)
				return nil
			})
			seen := func() []uuid.UUID {
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(handled)
			}

			begin := func() *gorm.DB {
				tx := app.Unscoped(ctx).Begin()
				if tx.Error != nil {
					t.Fatal(tx.Error)
				}
				t.Cleanup(func() { tx.Rollback() })
				if err := db.SetTenant(tx, tenant); err != nil {
					t.Fatal(err)
				}
				return tx
			}
			tx1, tx2 := begin(), begin()
			if tt.olderXID {
				if err := tx2.Exec("SELECT pg_current_xact_id()").Error; err != nil {
					t.Fatal(err)
				}
			}
			e1, err := events.Append(ctx, tx1, tenant, "ooo-1", 0, events.NewEvent{Type: typ, Data: 1})
			if err != nil {
				t.Fatal(err)
			}
			e2, err := events.Append(ctx, tx2, tenant, "ooo-2", 0, events.NewEvent{Type: typ, Data: 2})
			if err != nil {
				t.Fatal(err)
			}
			if e1[0].Position >= e2[0].Position {
				t.Fatalf("got positions %d (tx1) and %d (tx2), want tx1's earlier", e1[0].Position, e2[0].Position)
			}
			if err := tx2.Commit().Error; err != nil {
				t.Fatal(err)
			}

			// The trap is real: tx2's event is visible, tx1's is not.
			var visible []uuid.UUID
			if err := owner.Unscoped(ctx).Raw("SELECT id FROM events WHERE position >= ? AND type = ? ORDER BY position",
				e1[0].Position, typ).Scan(&visible).Error; err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(visible, []uuid.UUID{e2[0].ID}) {
				t.Fatalf("got visible %v, want only tx2's %s", visible, e2[0].ID)
			}
			if tt.olderXID {
				// A txid-below-xmin watermark would pass tx2's event.
				var naive []uuid.UUID
				if err := owner.Unscoped(ctx).Raw(`SELECT id FROM events WHERE position >= ? AND type = ?
					AND txid < pg_snapshot_xmin(pg_current_snapshot())`, e1[0].Position, typ).Scan(&naive).Error; err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(naive, []uuid.UUID{e2[0].ID}) {
					t.Errorf("got %v through a txid < xmin filter, want tx2's event (the scenario must defeat that filter)", naive)
				}
			}

			stop := start(t, d)
			time.Sleep(400 * time.Millisecond) // 20 polls
			if got := seen(); len(got) != 0 {
				t.Fatalf("got %v handled while tx1 is open, want none", got)
			}
			if cp := checkpoint(t, owner, sub); cp >= e1[0].Position {
				t.Fatalf("got checkpoint %d while tx1 is open, want it below tx1's position %d", cp, e1[0].Position)
			}

			want := []uuid.UUID{e1[0].ID, e2[0].ID}
			if tt.commit1 {
				if err := tx1.Commit().Error; err != nil {
					t.Fatal(err)
				}
			} else {
				if err := tx1.Rollback().Error; err != nil {
					t.Fatal(err)
				}
				want = want[1:]
			}
			// The handler's record is appended inside the delivery transaction,
			// before it commits: wait for the checkpoint, which commits with
			// the handler's effects, not for the record, or stop() could
			// cancel that transaction after the record was made.
			testenv.Eventually(t, 10*time.Second, func() (bool, string) {
				return checkpoint(t, owner, sub) >= e2[0].Position, "checkpoint past tx2's event"
			})
			stop()
			if got := seen(); !slices.Equal(got, want) {
				t.Errorf("got handled %v, want %v", got, want)
			}
		})
	}
}
