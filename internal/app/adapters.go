package app

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/inventory"
	"github.com/tenantd/tenantd/orders"
	"github.com/tenantd/tenantd/payments"
)

// The adapters below let modules talk through the small interfaces they
// declare, without importing each other.

// stock lets orders reserve, commit and release inventory.
type stock struct{ inv *inventory.Service }

func (s stock) Reserve(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID, lines []orders.StockLine, expiresAt time.Time) ([]orders.HeldStock, error) {
	in := make([]inventory.Line, len(lines))
	for i, l := range lines {
		in[i] = inventory.Line(l)
	}
	held, err := s.inv.Reserve(ctx, tx, tenantID, orderID, in, expiresAt)
	if err != nil {
		return nil, err
	}
	out := make([]orders.HeldStock, len(held))
	for i, h := range held {
		out[i] = orders.HeldStock{ReservationID: h.ID, ProductID: h.ProductID, SKU: h.SKU, Quantity: h.Quantity, UnitPrice: h.UnitPrice, Currency: h.Currency}
	}
	return out, nil
}

func (s stock) Commit(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) error {
	return s.inv.Commit(ctx, tx, tenantID, orderID)
}

func (s stock) Release(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) error {
	return s.inv.Release(ctx, tx, tenantID, orderID)
}

// payable lets payments read the order it charges.
type payable struct{ orders *orders.Service }

func (p payable) PaymentTarget(ctx context.Context, tx *gorm.DB, orderID uuid.UUID) (payments.Target, error) {
	o, err := p.orders.Lookup(ctx, tx, orderID)
	if errors.Is(err, orders.ErrNotFound) {
		return payments.Target{}, payments.ErrOrderNotFound
	}
	if err != nil {
		return payments.Target{}, err
	}
	return payments.Target{Status: string(o.Status), Total: o.Total, Currency: o.Currency}, nil
}

// refunds lets the order saga refund a payment that succeeded for an order
// cancelled meanwhile. The payments service is built after the orders
// service that needs this, so the adapter reaches it through the App.
type refunds struct{ app *App }

func (r refunds) RefundCancelledOrder(ctx context.Context, tx *gorm.DB, tenantID, paymentID uuid.UUID, cancellationReason string) error {
	return r.app.Payments.RefundCancelledOrder(ctx, tx, tenantID, paymentID, cancellationReason)
}

// sagaOutcomes counts finished orders for the saga metric: once per event,
// on the replica whose delivery committed. The handler runs inside the
// dispatcher's transaction, which may still roll back (a failed commit, a
// checkpoint another worker moved) and the event be delivered again, so a
// count made in the handler could count one event twice. The count is
// registered with the transaction instead, and made once PostgreSQL says
// the transaction committed.
func sagaOutcomes(m *obs.Metrics) events.Handler {
	committed := &afterCommit{waiting: map[string]*commitWaiter{}}
	return func(_ context.Context, tx *gorm.DB, e events.Event) error {
		outcome := "completed"
		if e.Type == orders.EventCancelled {
			var c orders.CancelledEvent
			if err := json.Unmarshal(e.Data, &c); err != nil {
				return fmt.Errorf("decode %s: %w", e.Type, err)
			}
			outcome = "cancelled_" + c.Reason
		}
		return committed.register(tx, func() { m.SagaOutcomes.WithLabelValues(outcome).Inc() })
	}
}

const (
	// commitPoll is how often afterCommit asks PostgreSQL about the
	// transactions it waits for (one query for all of them).
	commitPoll = 20 * time.Millisecond
	// commitGiveUp is how long afterCommit waits for a transaction whose
	// outcome it cannot learn (PostgreSQL unreachable) before dropping it.
	commitGiveUp = 30 * time.Second
)

// afterCommit runs functions once the PostgreSQL transaction they were
// registered in has committed, and never when it rolled back. It stands in
// for a per-transaction after-commit hook, which neither internal/db nor
// the event dispatcher offers: it notes the transaction's id
// (pg_current_xact_id) and asks pg_xact_status about every transaction it
// waits for, every commitPoll, from a goroutine that runs only while some
// wait. The status query reads no table, so it runs on the pool outside
// any tenant. A process that dies before learning of a commit loses that
// count, as it loses its counters anyway.
type afterCommit struct {
	mu      sync.Mutex
	pool    *sql.DB
	waiting map[string]*commitWaiter // by transaction id (xid8 as text)
	polling bool
}

// commitWaiter is what waits for one transaction.
type commitWaiter struct {
	since time.Time
	fns   []func()
}

// register runs fn after tx, a transaction, commits.
func (a *afterCommit) register(tx *gorm.DB, fn func()) error {
	var xid string
	if err := tx.Raw("SELECT pg_current_xact_id()::text").Scan(&xid).Error; err != nil {
		return fmt.Errorf("transaction id: %w", err)
	}
	pool, err := poolOf(tx)
	if err != nil {
		return fmt.Errorf("connection pool: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pool = pool
	w := a.waiting[xid]
	if w == nil {
		w = &commitWaiter{since: time.Now()}
		a.waiting[xid] = w
	}
	w.fns = append(w.fns, fn)
	if !a.polling {
		a.polling = true
		go a.poll()
	}
	return nil
}

// poolOf returns the connection pool tx's transaction came from: the
// session's configured pool (db.DB runs each transaction on a connection
// of its own from it), or the pool behind a database/sql transaction.
func poolOf(tx *gorm.DB) (*sql.DB, error) {
	if pool, ok := tx.Config.ConnPool.(*sql.DB); ok {
		return pool, nil
	}
	return tx.DB()
}

// poll resolves the waiting transactions until none is left.
func (a *afterCommit) poll() {
	pause := commitPoll
	for {
		time.Sleep(pause)
		a.mu.Lock()
		pool := a.pool
		ids := make([]string, 0, len(a.waiting))
		for id := range a.waiting {
			ids = append(ids, id)
		}
		a.mu.Unlock()
		status, err := transactionStatus(pool, ids)
		pause = commitPoll
		if err != nil {
			pause = time.Second
		}
		var run []func()
		a.mu.Lock()
		for id, w := range a.waiting {
			s, known := status[id]
			switch {
			case known && s == "committed":
				run = append(run, w.fns...)
				delete(a.waiting, id)
			case known && s != "in progress", time.Since(w.since) > commitGiveUp:
				// Aborted, too old for PostgreSQL to know, or unknowable.
				delete(a.waiting, id)
			}
		}
		done := len(a.waiting) == 0
		if done {
			a.polling = false
		}
		a.mu.Unlock()
		for _, fn := range run {
			fn()
		}
		if done {
			return
		}
	}
}

// transactionStatus returns pg_xact_status of each transaction id:
// "committed", "aborted", "in progress", or "" when too old to know.
func transactionStatus(pool *sql.DB, ids []string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := pool.QueryContext(ctx, "SELECT x::text, coalesce(pg_xact_status(x), '') FROM unnest($1::xid8[]) AS x",
		"{"+strings.Join(ids, ",")+"}")
	if err != nil {
		return nil, fmt.Errorf("transaction status: %w", err)
	}
	defer rows.Close()
	status := make(map[string]string, len(ids))
	for rows.Next() {
		var id, s string
		if err := rows.Scan(&id, &s); err != nil {
			return nil, fmt.Errorf("transaction status: %w", err)
		}
		status[id] = s
	}
	return status, rows.Err()
}

// countRejections counts the requests a rate limit or quota refused, by
// reason and plan.
func countRejections(m *obs.Metrics) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		if c.Writer.Status() != http.StatusTooManyRequests || len(c.Errors) == 0 {
			return
		}
		p, _ := identity.FromContext(c.Request.Context())
		m.Rejected.WithLabelValues(string(fault.CodeOf(c.Errors.Last().Err)), p.Plan).Inc()
	}
}
