package idempotency

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/wait"
)

const (
	// Retention is how long a key and its stored response are kept.
	Retention = 24 * time.Hour
	// Lease is how long a claim on a key stays valid without renewal, by
	// the database's clock: the key of a request whose process died, or
	// lost PostgreSQL, is free again within Lease. A running request renews
	// it every RenewEvery, so a few renewals may fail before it lapses.
	Lease = 4 * time.Second
	// RenewEvery is how often a running request renews its lease.
	RenewEvery = time.Second
	// maxAttempts bounds the claim loop when the row changes under it
	// (released, swept or taken over by a concurrent request).
	maxAttempts = 5
)

// Store keeps idempotency keys and their responses in PostgreSQL, in each
// tenant's rows. Leases are measured by PostgreSQL's clock (now()), which
// every replica shares: they last seconds, about as long as replicas' clocks
// may differ. Retention, a day long, follows the Store's own clock.
type Store struct {
	db         *db.DB
	now        func() time.Time
	lease      time.Duration
	renewEvery time.Duration
}

// NewStore returns a Store on d. now is the clock for creation and
// retention (not leases); nil means time.Now.
func NewStore(d *db.DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: d, now: now, lease: Lease, renewEvery: RenewEvery}
}

// leaseSeconds is the lease as make_interval's secs argument.
func (s *Store) leaseSeconds() float64 { return s.lease.Seconds() }

// scope names one key: the tenant, the credential that sent it and the key.
type scope struct {
	tenantID   uuid.UUID
	credential string
	key        string
}

// response is a handler's answer as stored and replayed.
type response struct {
	status  int
	headers map[string]string
	body    []byte
}

// outcome is what a request with a key must do.
type outcome int

const (
	// claimed: this request holds the key and runs the handler.
	claimed outcome = iota + 1
	// replay: the key holds a response for the same request.
	replay
	// inFlight: another request holds the key and its lease is valid.
	inFlight
	// reused: the key was used with a different request.
	reused
)

// decision is the result of acquire: the outcome, the claim id when
// claimed, the stored response when replaying.
type decision struct {
	outcome  outcome
	claimID  uuid.UUID
	response response
}

// keyRow is the part of an idempotency_keys row that acquire reads.
type keyRow struct {
	RequestHash     []byte    `gorm:"column:request_hash"`
	Status          *int      `gorm:"column:status"`
	ResponseBody    []byte    `gorm:"column:response_body"`
	ResponseHeaders string    `gorm:"column:response_headers"`
	Held            bool      `gorm:"column:held"` // the lease is valid by the database's clock
	ExpiresAt       time.Time `gorm:"column:expires_at"`
}

// acquire claims the key for a request with the given hash, or says why it
// cannot: the stored response to replay, a request in flight, or a
// different request under the same key.
func (s *Store) acquire(ctx context.Context, sc scope, hash []byte) (decision, error) {
	for range maxAttempts {
		d, retry, err := s.tryAcquire(ctx, sc, hash)
		if err != nil || !retry {
			return d, err
		}
	}
	// The row kept changing under us: some other request is busy with it.
	return decision{outcome: inFlight}, nil
}

// tryAcquire makes one attempt in one short transaction; retry means the row
// changed under it and the caller should try again.
func (s *Store) tryAcquire(ctx context.Context, sc scope, hash []byte) (d decision, retry bool, err error) {
	now := s.now().UTC()
	claimID := uuid.New()
	err = s.db.WithTenant(ctx, sc.tenantID, func(tx *gorm.DB) error {
		res := tx.Exec(`INSERT INTO idempotency_keys
				(tenant_id, credential, key, request_hash, claim_id, locked_until, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, now() + make_interval(secs => ?), ?, ?)
			ON CONFLICT DO NOTHING`,
			sc.tenantID, sc.credential, sc.key, hash, claimID, s.leaseSeconds(), now, now.Add(Retention))
		if res.Error != nil {
			return fmt.Errorf("claim idempotency key: %w", res.Error)
		}
		if res.RowsAffected == 1 {
			d = decision{outcome: claimed, claimID: claimID}
			return nil
		}

		var rows []keyRow
		err := tx.Raw(`SELECT request_hash, status, response_body, response_headers::text AS response_headers,
				locked_until > now() AS held, expires_at
			FROM idempotency_keys WHERE tenant_id = ? AND credential = ? AND key = ?`,
			sc.tenantID, sc.credential, sc.key).Scan(&rows).Error
		if err != nil {
			return fmt.Errorf("read idempotency key: %w", err)
		}
		if len(rows) == 0 { // released or swept since the INSERT
			retry = true
			return nil
		}
		r := rows[0]
		switch {
		case !r.ExpiresAt.After(now):
			// Past retention the key is free again, whatever it held.
			err := tx.Exec(`DELETE FROM idempotency_keys
				WHERE tenant_id = ? AND credential = ? AND key = ? AND expires_at <= ?`,
				sc.tenantID, sc.credential, sc.key, now).Error
			if err != nil {
				return fmt.Errorf("delete expired idempotency key: %w", err)
			}
			retry = true
		case !bytes.Equal(r.RequestHash, hash):
			d.outcome = reused
		case r.Status == nil && r.Held:
			d.outcome = inFlight
		case r.Status == nil:
			// The holder's lease lapsed (its process died, or it lost
			// PostgreSQL): take over. The WHERE admits one taker; a
			// concurrent one updates no row.
			res := tx.Exec(`UPDATE idempotency_keys SET claim_id = ?, locked_until = now() + make_interval(secs => ?)
				WHERE tenant_id = ? AND credential = ? AND key = ? AND status IS NULL AND locked_until <= now()`,
				claimID, s.leaseSeconds(), sc.tenantID, sc.credential, sc.key)
			if res.Error != nil {
				return fmt.Errorf("take over idempotency key: %w", res.Error)
			}
			if res.RowsAffected == 1 {
				d = decision{outcome: claimed, claimID: claimID}
			} else {
				retry = true
			}
		default:
			headers := map[string]string{}
			if err := json.Unmarshal([]byte(r.ResponseHeaders), &headers); err != nil {
				return fmt.Errorf("decode stored response headers: %w", err)
			}
			d = decision{outcome: replay, response: response{status: *r.Status, headers: headers, body: r.ResponseBody}}
		}
		return nil
	})
	if err != nil {
		return decision{}, false, err
	}
	return d, retry, nil
}

// finish stores the response of the request holding claimID. It reports
// false when the claim was lost (taken over after its lease lapsed), in
// which case nothing is stored.
func (s *Store) finish(ctx context.Context, sc scope, claimID uuid.UUID, resp response) (bool, error) {
	headers, err := json.Marshal(resp.headers)
	if err != nil {
		return false, fmt.Errorf("encode response headers: %w", err)
	}
	body := resp.body
	if body == nil {
		body = []byte{}
	}
	return s.onClaim(ctx, sc, claimID, "store idempotent response",
		`UPDATE idempotency_keys SET status = ?, response_body = ?, response_headers = ?::jsonb`,
		resp.status, body, string(headers))
}

// release deletes the claim held by claimID so the key may be used again.
// It reports false when the claim was no longer held.
func (s *Store) release(ctx context.Context, sc scope, claimID uuid.UUID) (bool, error) {
	return s.onClaim(ctx, sc, claimID, "release idempotency key", `DELETE FROM idempotency_keys`)
}

// renew extends the lease of claimID. It reports false when the claim was
// no longer held.
func (s *Store) renew(ctx context.Context, sc scope, claimID uuid.UUID) (bool, error) {
	return s.onClaim(ctx, sc, claimID, "renew idempotency lease",
		`UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => ?)`, s.leaseSeconds())
}

// heldClaim is the WHERE clause of a statement on a key that claim_id
// still holds (no response stored yet).
const heldClaim = `WHERE tenant_id = ? AND credential = ? AND key = ? AND claim_id = ? AND status IS NULL`

// onClaim runs stmt, completed by heldClaim, with args and then the
// claim's own, in a transaction of the tenant; it reports whether the
// claim was still held. what names the statement in errors.
func (s *Store) onClaim(ctx context.Context, sc scope, claimID uuid.UUID, what, stmt string, args ...any) (bool, error) {
	var held bool
	err := s.db.WithTenant(ctx, sc.tenantID, func(tx *gorm.DB) error {
		res := tx.Exec(stmt+" "+heldClaim, append(args, sc.tenantID, sc.credential, sc.key, claimID)...)
		if res.Error != nil {
			return fmt.Errorf("%s: %w", what, res.Error)
		}
		held = res.RowsAffected == 1
		return nil
	})
	return held, err
}

// keepAlive renews the lease of claimID every renewEvery until the returned
// stop is called, so that a handler slower than the lease is not run a
// second time by a retry. A renewal that fails (PostgreSQL unreachable) is
// tried again at the next tick; if none succeeds within the lease, the key
// is free for a retry. Renewing ends when the claim is lost. stop waits for
// the renewing goroutine to end: from then on the lease lapses within
// s.lease unless the claim is settled first.
func (s *Store) keepAlive(ctx context.Context, sc scope, claimID uuid.UUID, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		wait.Every(ctx, s.renewEvery, func() {
			// A renewal stuck longer than half the lease is worth no more
			// than a failed one: give the next tick its chance.
			rctx, rcancel := context.WithTimeout(ctx, s.lease/2)
			held, err := s.renew(rctx, sc, claimID)
			rcancel()
			switch {
			case ctx.Err() != nil:
				// stopped meanwhile: nothing to report
			case err != nil:
				log.WarnContext(ctx, "idempotency: renewing lease failed; trying again", "err", err, "tenant_id", sc.tenantID)
			case !held:
				log.WarnContext(ctx, "idempotency: lease lost while the handler runs", "tenant_id", sc.tenantID)
				cancel() // renewing ends
			}
		})
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// Sweep deletes the expired keys of every tenant and returns how many. It
// goes through the idempotency_sweep SECURITY DEFINER function, which can
// delete expired rows and nothing else.
func (s *Store) Sweep(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.Worker().Unscoped(ctx).Raw("SELECT idempotency_sweep()").Scan(&n).Error; err != nil {
		return 0, fmt.Errorf("sweep idempotency keys: %w", err)
	}
	return n, nil
}

// RunSweeper sweeps expired keys at once and then every interval until ctx
// ends, logging failures to log. Every replica may run it; the sweeps do
// not conflict.
func (s *Store) RunSweeper(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := s.Sweep(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.ErrorContext(ctx, "idempotency: sweep failed", "err", err)
		case n > 0:
			log.DebugContext(ctx, "idempotency: swept expired keys", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
