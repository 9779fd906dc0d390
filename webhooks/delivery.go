package webhooks

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/sony/gobreaker/v2"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/netguard"
	"github.com/tenantd/tenantd/internal/wait"
)

// Actor is the audit actor of what the delivery workers do.
const Actor = "system:webhooks"

// ActionDisabled is the audit action written when the workers disable an
// endpoint (410, or FailingLimit of failures).
const ActionDisabled = "webhook.disabled"

// trimBatch is how many expired deliveries one attempt removes at most.
const trimBatch = 100

// maxErrorText bounds the error kept with an attempt.
const maxErrorText = 500

// sender sends deliveries: the guarded HTTP client, a circuit breaker per
// endpoint, and the wake-up of the claim loop.
type sender struct {
	client   *http.Client
	opts     Options
	m        *metrics
	breakers *lru.Cache[uuid.UUID, *gobreaker.CircuitBreaker[int]]
	mu       sync.Mutex // creating breakers
	wakeCh   chan struct{}
}

func newSender(guard *netguard.Guard, opts Options, m *metrics) *sender {
	client := guard.Client(opts.Timeout)
	// A redirect is answered like any other status that is not 2xx: it is
	// recorded and retried, never followed (it could point anywhere).
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cache, err := lru.New[uuid.UUID, *gobreaker.CircuitBreaker[int]](10000)
	if err != nil {
		panic(err) // only for a size < 1
	}
	return &sender{client: client, opts: opts, m: m, breakers: cache, wakeCh: make(chan struct{}, 1)}
}

// wake makes the claim loop look for due deliveries now.
func (s *sender) wake() {
	select {
	case s.wakeCh <- struct{}{}:
	default:
	}
}

// breaker returns the endpoint's circuit breaker, made on first use. The
// breakers live in this process: each replica learns an endpoint's health
// on its own.
func (s *sender) breaker(endpointID uuid.UUID) *gobreaker.CircuitBreaker[int] {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.breakers.Get(endpointID); ok {
		return b
	}
	b := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
		Name:        endpointID.String(),
		MaxRequests: 1,
		Timeout:     s.opts.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= s.opts.BreakerFailures },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				s.m.breakerOpened()
			}
		},
	})
	s.breakers.Add(endpointID, b)
	return b
}

// errStatus is an answer that is not 2xx.
type errStatus int

func (e errStatus) Error() string { return "the endpoint answered " + strconv.Itoa(int(e)) }

// result is the outcome of one attempt.
type result struct {
	status  int // 0 without an answer
	latency time.Duration
	err     error // nil for 2xx
}

// send makes one attempt through the endpoint's breaker. open is true when
// the breaker refused it (nothing was sent).
func (s *sender) send(ctx context.Context, url string, keys [][]byte, d deliveryRow) (r result, open bool) {
	status, err := s.breaker(d.EndpointID).Execute(func() (int, error) {
		start := time.Now()
		status, err := s.post(ctx, url, keys, d)
		r.latency = time.Since(start)
		if err == nil && (status < 200 || status > 299) {
			err = errStatus(status)
		}
		return status, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return result{}, true
	}
	return result{status: status, latency: r.latency, err: err}, false
}

func (s *sender) post(ctx context.Context, url string, keys [][]byte, d deliveryRow) (int, error) {
	body := []byte(d.Payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	msgID := d.EventID.String()
	at := s.opts.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tenantd-webhooks/1")
	req.Header.Set("webhook-id", msgID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	req.Header.Set("webhook-signature", Sign(msgID, at, body, keys...))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	// Read a little so the connection can be reused; the body is not kept.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)); err != nil {
		return resp.StatusCode, nil //nolint:nilerr // the status decides; a body cut short does not matter
	}
	return resp.StatusCode, nil
}

// Run runs the delivery workers until ctx ends: it claims due deliveries
// (leased to this process), sends each outside any transaction, at most
// Options.Workers at once and Options.PerEndpoint per endpoint, and
// records the outcome. Deliveries being sent when ctx ends are released
// for the next worker, not counted as attempts.
func (s *Service) Run(ctx context.Context) {
	slots := make(chan struct{}, s.opts.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		claimed, err := s.claimRound(ctx, slots, &wg)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("webhooks: looking for due deliveries failed", "err", err)
		}
		if claimed > 0 && err == nil {
			continue
		}
		if !wait.SleepOrWake(ctx, s.opts.PollInterval, s.out.wakeCh) {
			return
		}
	}
}

// claimRound claims as many due deliveries as there are free slots and
// starts sending them; it returns how many it claimed.
func (s *Service) claimRound(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) (int, error) {
	free := cap(slots) - len(slots)
	if free == 0 {
		// Wait for a slot, then look again.
		select {
		case slots <- struct{}{}:
			<-slots
		case <-ctx.Done():
		}
		return 0, ctx.Err()
	}
	now := s.opts.Now().UTC()
	due, err := dueDeliveries(ctx, s.db, now, s.opts.PerEndpoint, free)
	if err != nil {
		return 0, err
	}
	claimed := 0
	var firstErr error
	for _, p := range due {
		// One delivery that cannot be claimed does not hold up the others.
		job, ok, err := s.claim(ctx, p.TenantID, p.DeliveryID)
		if err != nil {
			firstErr = cmp.Or(firstErr, fmt.Errorf("claim delivery %s of tenant %s: %w", p.DeliveryID, p.TenantID, err))
			continue
		}
		if !ok {
			continue
		}
		claimed++
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			s.deliver(ctx, job)
		})
	}
	return claimed, firstErr
}

// job is a claimed delivery with what sending it needs.
type job struct {
	d     deliveryRow
	lease string // the claim's lease owner: this process and the claim
	url   string
	keys  [][]byte
	// keyErr: a signing secret could not be opened (WEBHOOK_SECRET_KEY
	// changed or lost); the attempt fails without sending, and is logged
	// for the tenant to see, until the secret is rotated.
	keyErr error
}

// claim leases one delivery to this process and reads its endpoint's URL
// and signing keys.
func (s *Service) claim(ctx context.Context, tenantID, id uuid.UUID) (j job, ok bool, err error) {
	now := s.opts.Now().UTC()
	// Each claim has its own lease name, so that an attempt whose lease
	// expired cannot record over a later claim of this same process.
	j.lease = s.opts.Owner + "/" + uuid.NewString()
	err = s.db.Worker().WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		var err error
		if j.d, ok, err = claimDelivery(tx, tenantID, id, j.lease, now, now.Add(s.opts.Lease)); err != nil || !ok {
			return err
		}
		ep, err := getEndpoint(tx, tenantID, j.d.EndpointID, false)
		if err != nil {
			return err
		}
		if ep.Status != StatusEnabled {
			ok = false
			return releaseDelivery(tx, tenantID, id, j.lease, j.d.NextAttemptAt.Time, now)
		}
		j.url = ep.URL
		key, err := s.box.Open(tenantID, ep.ID, ep.Secret)
		if err != nil {
			j.keyErr = err
			return nil
		}
		j.keys = [][]byte{key}
		if ep.PreviousSecret != nil && ep.PreviousExpiresAt.Valid && now.Before(ep.PreviousExpiresAt.Time) {
			if old, err := s.box.Open(tenantID, ep.ID, ep.PreviousSecret); err == nil {
				j.keys = append(j.keys, old)
			}
		}
		return nil
	})
	return j, ok, err
}

// deliver sends a claimed delivery and records the outcome.
func (s *Service) deliver(ctx context.Context, j job) {
	var r result
	var open bool
	if j.keyErr != nil {
		r.err = fmt.Errorf("not sent: %w; rotate the endpoint's secret", j.keyErr)
	} else {
		r, open = s.out.send(ctx, j.url, j.keys, j.d)
	}
	// Record even while shutting down, briefly: the lease is released or
	// the outcome kept instead of waiting for the lease to expire.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	now := s.opts.Now().UTC()
	var err error
	switch {
	case open:
		s.m.attempt("breaker_open", 0)
		err = s.release(rctx, j, now.Add(s.opts.BreakerOpen), now)
	case ctx.Err() != nil && r.err != nil:
		err = s.release(rctx, j, now, now)
	default:
		err = s.record(rctx, j, r, now)
	}
	if err != nil {
		s.log.Warn("webhooks: recording a delivery failed; it is sent again when its lease expires",
			"tenant_id", j.d.TenantID, "delivery_id", j.d.ID, "err", err)
	}
}

func (s *Service) release(ctx context.Context, j job, next, now time.Time) error {
	return s.db.Worker().WithTenant(ctx, j.d.TenantID, func(tx *gorm.DB) error {
		return releaseDelivery(tx, j.d.TenantID, j.d.ID, j.lease, next, now)
	})
}

// record writes an attempt's outcome: the delivery's new state, the log
// row, and the endpoint's health (disabled on 410, or after FailingLimit
// of failures, with an audit event).
func (s *Service) record(ctx context.Context, j job, r result, now time.Time) error {
	d := j.d
	a := attemptRow{TenantID: d.TenantID, DeliveryID: d.ID, Attempt: d.Attempts + 1, AttemptedAt: now,
		LatencyMs: r.latency.Milliseconds()}
	if r.status != 0 {
		a.StatusCode = sql.NullInt64{Int64: int64(r.status), Valid: true}
	}
	d.Attempts++
	outcome := "succeeded"
	var disable string
	switch {
	case r.err == nil:
		d.Status, d.NextAttemptAt = DeliverySucceeded, sql.NullTime{}
	case r.status == http.StatusGone:
		outcome = "gone"
		d.Status, d.NextAttemptAt = DeliveryFailed, sql.NullTime{}
		disable = ReasonGone
	default:
		outcome = "failed"
		if wait, ok := s.opts.Schedule.Next(d.Attempts, s.opts.Jitter); ok {
			d.Status, d.NextAttemptAt = DeliveryPending, validTime(now.Add(wait))
			a.NextRetryAt = d.NextAttemptAt
		} else {
			d.Status, d.NextAttemptAt = DeliveryFailed, sql.NullTime{}
		}
	}
	if r.err != nil {
		msg := r.err.Error()
		if len(msg) > maxErrorText {
			msg = msg[:maxErrorText]
		}
		a.Error = sql.NullString{String: msg, Valid: true}
	}
	s.m.attempt(outcome, r.latency)
	return s.db.Worker().WithTenant(ctx, d.TenantID, func(tx *gorm.DB) error {
		held, err := recordAttempt(tx, d, j.lease, a)
		if err != nil || !held {
			return err
		}
		// The endpoint's log is trimmed as it grows: a few finished
		// deliveries past retention per attempt.
		if err := trimDeliveries(tx, d.TenantID, d.EndpointID, now.Add(-s.opts.Retention), trimBatch); err != nil {
			return err
		}
		if r.err == nil {
			return endpointSucceeded(tx, d.TenantID, d.EndpointID)
		}
		if disable == "" {
			since, err := endpointFailed(tx, d.TenantID, d.EndpointID, now)
			if err != nil {
				return err
			}
			if now.Sub(since) >= s.opts.FailingLimit {
				disable = ReasonFailing
			}
		}
		if disable == "" {
			return nil
		}
		url, changed, err := disableEndpoint(tx, d.TenantID, d.EndpointID, disable, now)
		if err != nil || !changed {
			return err
		}
		s.m.disabled(disable)
		s.log.Warn("webhooks: endpoint disabled", "tenant_id", d.TenantID, "endpoint_id", d.EndpointID, "reason", disable)
		return audit.Record(ctx, tx, d.TenantID, audit.Entry{Actor: Actor, Action: ActionDisabled,
			Resource: "webhook:" + d.EndpointID.String(),
			Summary:  map[string]any{"reason": disable, "url": url, "delivery_id": d.ID.String(), "status_code": r.status}})
	})
}

func validTime(t time.Time) sql.NullTime { return sql.NullTime{Time: t, Valid: true} }
