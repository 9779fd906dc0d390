package audit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/wait"
)

// sealLockClass and sealLockKey name the session advisory lock that is the
// sealer's lease: whoever holds it is the one sealer.
const (
	sealLockClass int32 = 0x61750002
	sealLockKey   int32 = 0
)

// sealScan is how many unsealed rows a pass looks at across tenants to pick
// the tenants it seals.
const sealScan = 1000

// sealPages bounds the batches one pass seals for one tenant, so that a
// tenant with a long backlog does not hold the others back.
const sealPages = 20

// sealOptions are the sealer's settings (see Options).
type sealOptions struct {
	interval time.Duration
	batch    int
	workers  int
	leaseURL string
}

// RunSealer seals committed audit rows into their tenants' hash chains
// until ctx ends. Run it on every replica: one at a time holds the sealer's
// lease, a session advisory lock on a connection of its own (to LeaseURL,
// else one taken out of the pool), and seals; the others try to take the
// lease every SealInterval. A replica that dies drops its connection and
// with it the lease. Sealing itself uses pool connections, one transaction
// per tenant batch, SealWorkers at a time.
//
// The guarantee: a row is sealed only once its position is at or below the
// settled horizon of events_position_seq (internal/events.Horizon), so
// every row that will ever commit at a lower position has committed; rows
// are sealed in position order, each tenant's chain by one transaction at a
// time, seq following the chain's head. So a tenant's seq order is its
// position order and the chain never needs a row inserted in the middle.
// A transaction left open holds the horizon, and with it sealing, back for
// as long as it stays open; `tenantd audit verify` reports rows waiting
// too long. A sealing transaction that meets a row sealed by someone else
// (a lease lost mid-pass) fails and changes nothing.
func (a *Auditor) RunSealer(ctx context.Context) {
	s := &sealer{db: a.db, log: a.log, hz: events.NewHorizon(a.db), opts: a.seal, failing: map[uuid.UUID]*retryAt{}}
	s.run(ctx)
}

// sealer links unsealed rows into their chains while it holds the lease.
type sealer struct {
	db   *db.DB
	log  *slog.Logger
	hz   *events.Horizon
	opts sealOptions
	// failing holds the tenants whose last sealing failed, so that one
	// tenant that cannot be sealed is retried with backoff without holding
	// the others back. Only run's goroutine touches it.
	failing map[uuid.UUID]*retryAt
}

// retryAt is when a failing tenant is tried again.
type retryAt struct {
	failures int
	at       time.Time
}

// maxTenantBackoff bounds the pause before a failing tenant is tried again.
const maxTenantBackoff = 30 * time.Second

func (s *sealer) run(ctx context.Context) {
	var held lease
	defer func() {
		if held != nil {
			held.release()
		}
	}()
	failures := 0
	for {
		if held != nil {
			if err := held.alive(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("audit: sealer lease connection lost", "err", err)
				held.release()
				held = nil
			}
		}
		if held == nil {
			var err error
			if held, err = s.takeLease(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("audit: take the sealer lease", "err", err)
			}
		}
		pause := s.opts.interval
		if held != nil {
			more, err := s.pass(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				failures++
				pause = min(s.opts.interval<<min(failures, 6), 10*time.Second)
				s.log.Warn("audit: sealing failed; retrying", "failures", failures, "err", err)
			case more:
				failures = 0
				continue
			default:
				failures = 0
			}
		}
		if !wait.Sleep(ctx, pause) {
			return
		}
	}
}

// lease is a held sealer lease: a session holding the lease's advisory lock.
type lease interface {
	// alive checks the session still stands, and with it the lock.
	alive(ctx context.Context) error
	// release ends the session, which releases the lock.
	release()
}

// leaseName is the application_name of the lease connection opened with
// LeaseURL, so operators can tell it apart in pg_stat_activity.
const leaseName = "tenantd-audit-sealer"

// takeLease returns the sealer's lease, or nil when another session holds
// it: on a connection of its own to LeaseURL, or, without one, on a
// connection taken out of the pool for as long as the lease is held.
func (s *sealer) takeLease(ctx context.Context) (lease, error) {
	if s.opts.leaseURL == "" {
		return takePoolLease(ctx, s.db)
	}
	conn, err := db.Connect(ctx, s.opts.leaseURL, leaseName)
	if err != nil {
		return nil, fmt.Errorf("lease connection: %w", err)
	}
	l := &connLease{conn: conn}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, $2)", sealLockClass, sealLockKey).Scan(&ok); err != nil || !ok {
		l.release()
		return nil, err
	}
	return l, nil
}

// connLease is a lease held on a connection outside the pool.
type connLease struct{ conn *pgx.Conn }

func (l *connLease) alive(ctx context.Context) error { return l.conn.Ping(ctx) }

func (l *connLease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.conn.Close(ctx); err != nil {
		slog.Debug("audit: close the sealer lease connection", "err", err)
	}
}

// poolLease is a lease held on a connection taken out of the pool.
type poolLease struct{ conn *sql.Conn }

// takePoolLease returns a lease on a pool connection, or nil when another
// session holds it.
func takePoolLease(ctx context.Context, d *db.DB) (lease, error) {
	sqlDB, err := d.Unscoped(ctx).DB()
	if err != nil {
		return nil, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1, $2)", sealLockClass, sealLockKey).Scan(&ok); err != nil {
		discard(conn)
		return nil, err
	}
	if !ok {
		// Not held by this session: the connection can go back to the pool.
		if err := conn.Close(); err != nil && !errors.Is(err, sql.ErrConnDone) {
			return nil, err
		}
		return nil, nil
	}
	return &poolLease{conn: conn}, nil
}

func (l *poolLease) alive(ctx context.Context) error { return l.conn.PingContext(ctx) }

func (l *poolLease) release() { discard(l.conn) }

// discard closes conn's session, which releases its advisory locks, instead
// of returning it to the pool still holding them.
func discard(conn *sql.Conn) {
	if err := conn.Raw(func(any) error { return driver.ErrBadConn }); err != nil && !errors.Is(err, driver.ErrBadConn) {
		return // already closed
	}
	if err := conn.Close(); err != nil && !errors.Is(err, sql.ErrConnDone) {
		slog.Debug("audit: close the sealer lease connection", "err", err)
	}
}

// pass seals, for each tenant with unsealed rows at or below the settled
// horizon (the first sealScan such rows across tenants, but for tenants
// backed off after a failure), its rows up to the horizon, several tenants
// at once. more says work is left that the next pass should do at once.
// A tenant's failure is logged and backed off from, not returned.
func (s *sealer) pass(ctx context.Context) (more bool, err error) {
	settled, err := s.hz.Settled(ctx)
	if err != nil {
		return false, err
	}
	if settled <= 0 {
		return false, nil
	}
	now := time.Now()
	var skip []uuid.UUID
	for id, r := range s.failing {
		if now.Before(r.at) {
			skip = append(skip, id)
		}
	}
	tenants, more, err := unsealedTenants(ctx, s.db, settled, sealScan, skip)
	if err != nil || len(tenants) == 0 {
		return false, err
	}
	errs := make([]error, len(tenants))
	left := make([]bool, len(tenants))
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.opts.workers)
	for i, t := range tenants {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			left[i], errs[i] = s.sealTenant(ctx, t, settled)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	for i, t := range tenants {
		if errs[i] == nil {
			delete(s.failing, t)
			more = more || left[i]
			continue
		}
		r := s.failing[t]
		if r == nil {
			r = &retryAt{}
			s.failing[t] = r
		}
		r.failures++
		r.at = time.Now().Add(min(s.opts.interval<<min(r.failures, 10), maxTenantBackoff))
		s.log.Warn("audit: sealing a tenant's chain failed; retrying", "tenant_id", t, "failures", r.failures, "err", errs[i])
	}
	return more, nil
}

// sealTenant seals the tenant's rows at or below upto, a batch per
// transaction, up to sealPages batches; left says rows may remain.
func (s *sealer) sealTenant(ctx context.Context, tenantID uuid.UUID, upto int64) (left bool, err error) {
	for range sealPages {
		n, err := s.sealBatch(ctx, tenantID, upto)
		if err != nil || n < s.opts.batch {
			return false, err
		}
	}
	return true, nil
}

// sealBatch links the tenant's oldest unsealed rows at or below upto (up to
// a batch) to its chain's head, in position order, in one transaction.
func (s *sealer) sealBatch(ctx context.Context, tenantID uuid.UUID, upto int64) (n int, err error) {
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		tx = tx.WithContext(ctx)
		seq, prev, err := head(tx, tenantID)
		if err != nil {
			return err
		}
		evs, err := unsealedPage(tx, tenantID, upto, s.opts.batch)
		if err != nil || len(evs) == 0 {
			n = 0
			return err
		}
		for i := range evs {
			seq++
			evs[i].Seq, evs[i].PrevHash = seq, prev
			evs[i].Hash = evs[i].storedHash()
			prev = evs[i].Hash
		}
		n = len(evs)
		return sealEvents(tx, tenantID, evs)
	})
	return n, err
}
