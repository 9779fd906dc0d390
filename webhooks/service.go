package webhooks

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/netguard"
)

// HostChecker validates the host of a URL when an endpoint is registered
// (netguard.Guard).
type HostChecker interface {
	CheckHost(host string) error
}

// Options configure a Service; zero values take the defaults.
type Options struct {
	// AllowPrivate lets endpoints on loopback and private addresses (and
	// http URLs) through: WEBHOOK_ALLOW_PRIVATE, for development and tests.
	AllowPrivate bool
	// SecretKey seals signing secrets at rest (WEBHOOK_SECRET_KEY); empty
	// stores them plain.
	SecretKey string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Schedule is the delay before each retry; default DefaultSchedule.
	Schedule Schedule
	// Jitter returns a number in [0, 1) that spreads retries; default
	// math/rand.
	Jitter func() float64
	// Timeout bounds one attempt (connecting, sending, the answer);
	// default 15 s.
	Timeout time.Duration
	// Lease is how long a worker holds a claimed delivery before another
	// may take it (its replica is then taken for dead); default Timeout +
	// 45 s.
	Lease time.Duration
	// Workers is how many deliveries one process sends at once; default
	// 16.
	Workers int
	// PerEndpoint is how many deliveries of one endpoint are in flight at
	// once, across replicas; default 2.
	PerEndpoint int
	// PollInterval is how often due deliveries are looked for when idle;
	// default 1 s.
	PollInterval time.Duration
	// BreakerFailures consecutive failures open an endpoint's circuit
	// breaker for BreakerOpen; defaults 5 and 30 s.
	BreakerFailures uint32
	BreakerOpen     time.Duration
	// FailingLimit is how long every attempt may fail before the endpoint
	// is disabled; default 72 h.
	FailingLimit time.Duration
	// Retention is how long finished deliveries (and their attempts) are
	// kept; default 30 days.
	Retention time.Duration
	// Metrics, when set, registers the webhook metrics.
	Metrics prometheus.Registerer
	// Owner names this process in its leases; default a random id.
	Owner string
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Schedule == nil {
		o.Schedule = DefaultSchedule
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = o.Timeout + 45*time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.PerEndpoint <= 0 {
		o.PerEndpoint = 2
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerOpen <= 0 {
		o.BreakerOpen = 30 * time.Second
	}
	if o.FailingLimit <= 0 {
		o.FailingLimit = FailingLimit
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.Owner == "" {
		o.Owner = "webhooks:" + uuid.NewString()
	}
	return o
}

// Service owns webhook endpoints and their deliveries: the use cases of the
// HTTP routes, the event subscriber that enqueues deliveries, and the
// delivery workers (Run).
type Service struct {
	db    *db.DB
	log   *slog.Logger
	box   *Box
	guard *netguard.Guard
	opts  Options
	out   *sender
	m     *metrics
}

// NewService returns a Service on d.
func NewService(d *db.DB, log *slog.Logger, opts Options) (*Service, error) {
	opts = opts.withDefaults()
	box, err := NewBox(opts.SecretKey)
	if err != nil {
		return nil, err
	}
	if !box.Encrypts() {
		log.Warn("WEBHOOK_SECRET_KEY is not set: webhook signing secrets are stored in the database as they are; " +
			"set it so that a database read alone does not reveal them")
	}
	guard := netguard.New(netguard.Options{AllowPrivate: opts.AllowPrivate})
	s := &Service{db: d, log: log, box: box, guard: guard, opts: opts, m: newMetrics(opts.Metrics)}
	s.out = newSender(guard, opts, s.m)
	return s, nil
}

// Subscriber is where Subscribe registers: the event dispatcher.
type Subscriber interface {
	SubscribeBatch(subscriber string, types []string, h events.BatchHandler)
}

// SubscriberName is the event dispatcher's name for the webhook feed.
const SubscriberName = "webhooks"

// Subscribe registers the feed with the dispatcher: for every event, one
// delivery per enabled endpoint whose filter admits its type, enqueued in
// the dispatcher's transaction (with its checkpoint, so exactly once) and
// nothing else. Sending is the workers' job: a slow endpoint never holds
// the dispatcher up.
func (s *Service) Subscribe(d Subscriber) {
	d.SubscribeBatch(SubscriberName, nil, s.enqueue)
}

func (s *Service) enqueue(ctx context.Context, tx *gorm.DB, evs []events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	tenantID := evs[0].TenantID
	eps, err := enabledEndpoints(tx, tenantID)
	if err != nil || len(eps) == 0 {
		return err
	}
	now := s.opts.Now().UTC()
	var rows []deliveryRow
	for _, ev := range evs {
		var body []byte
		for _, ep := range eps {
			if !Matches([]string(ep.EventTypes), ev.Type) {
				continue
			}
			if body == nil {
				if body, err = payloadOf(ev.Type, ev.CreatedAt, ev.Data); err != nil {
					return err
				}
			}
			rows = append(rows, deliveryRow{TenantID: tenantID, ID: uuid.Must(uuid.NewV7()), EndpointID: ep.ID,
				EventID: ev.ID, EventType: ev.Type, Origin: OriginEvent, Payload: string(body),
				NextAttemptAt: validTime(now), CreatedAt: now})
		}
	}
	if _, err := insertDeliveries(tx, rows); err != nil {
		return fmt.Errorf("enqueue webhook deliveries: %w", err)
	}
	if len(rows) > 0 {
		db.AfterCommit(tx, s.out.wake)
	}
	return nil
}

// payloadOf is the Standard Webhooks body of an event.
func payloadOf(typ string, at time.Time, data json.RawMessage) ([]byte, error) {
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	b, err := json.Marshal(Payload{Type: typ, Timestamp: at.UTC(), Data: data})
	if err != nil {
		return nil, fmt.Errorf("webhook payload of %s: %w", typ, err)
	}
	return b, nil
}

// Create registers an endpoint and returns it with its secret, which is
// shown this once.
func (s *Service) Create(ctx context.Context, tenantID uuid.UUID, n NewEndpoint) (Endpoint, string, error) {
	var f fault.Fields
	checkURL(n.URL, s.guard, s.opts.AllowPrivate, &f)
	checkEventTypes(n.EventTypes, &f)
	if len(n.Description) > maxDescription {
		f.Add("description", "must be at most 500 characters")
	}
	if err := f.Err(); err != nil {
		return Endpoint{}, "", err
	}
	key, secret, err := newSecret()
	if err != nil {
		return Endpoint{}, "", err
	}
	now := s.opts.Now().UTC()
	r := endpointRow{TenantID: tenantID, ID: uuid.Must(uuid.NewV7()), URL: n.URL, Description: n.Description,
		EventTypes: db.TextArray(normalizeTypes(n.EventTypes)), Status: StatusEnabled, CreatedAt: now, UpdatedAt: now, Version: 1}
	if r.Secret, err = s.box.Seal(tenantID, r.ID, key); err != nil {
		return Endpoint{}, "", err
	}
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error { return insertEndpoint(tx, r) })
	if err != nil {
		return Endpoint{}, "", fmt.Errorf("create webhook endpoint: %w", err)
	}
	return r.toModel(), secret, nil
}

// List returns up to limit+1 of the tenant's endpoints after the id after.
func (s *Service) List(ctx context.Context, tenantID, after uuid.UUID, limit int) ([]Endpoint, error) {
	return db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) ([]Endpoint, error) {
		return listEndpoints(tx, tenantID, after, limit)
	})
}

// Get returns one endpoint.
func (s *Service) Get(ctx context.Context, tenantID, id uuid.UUID) (Endpoint, error) {
	r, err := db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) (endpointRow, error) {
		return getEndpoint(tx, tenantID, id, false)
	})
	return r.toModel(), err
}

// Update applies a patch. Enabling a disabled endpoint clears its failure
// record, so deliveries still pending resume.
func (s *Service) Update(ctx context.Context, tenantID, id uuid.UUID, p EndpointPatch) (Endpoint, error) {
	var f fault.Fields
	if p.URL != nil {
		checkURL(*p.URL, s.guard, s.opts.AllowPrivate, &f)
	}
	if p.EventTypes != nil {
		checkEventTypes(p.EventTypes, &f)
	}
	if p.Description != nil && len(*p.Description) > maxDescription {
		f.Add("description", "must be at most 500 characters")
	}
	if p.Status != nil && *p.Status != StatusEnabled && *p.Status != StatusDisabled {
		f.Add("status", "must be enabled or disabled")
	}
	if err := f.Err(); err != nil {
		return Endpoint{}, err
	}
	var ep Endpoint
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		r, err := getEndpoint(tx, tenantID, id, true)
		if err != nil {
			return err
		}
		if p.IfMatch != 0 && p.IfMatch != r.Version {
			return ErrVersionMismatch
		}
		if p.URL != nil {
			r.URL = *p.URL
		}
		if p.EventTypes != nil {
			r.EventTypes = db.TextArray(normalizeTypes(p.EventTypes))
		}
		if p.Description != nil {
			r.Description = *p.Description
		}
		if p.Status != nil && *p.Status != r.Status {
			r.Status = *p.Status
			r.DisabledReason = sql.NullString{}
			if r.Status == StatusDisabled {
				r.DisabledReason = sql.NullString{String: ReasonManual, Valid: true}
			}
			r.FailingSince.Valid = false
		}
		r.UpdatedAt = s.opts.Now().UTC()
		if err := updateEndpoint(tx, r); err != nil {
			return err
		}
		r.Version++
		ep = r.toModel()
		return nil
	})
	if err == nil && ep.Status == StatusEnabled {
		s.out.wake()
	}
	return ep, err
}

// Delete removes an endpoint with its deliveries and their log.
func (s *Service) Delete(ctx context.Context, tenantID, id uuid.UUID) error {
	return s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error { return deleteEndpoint(tx, tenantID, id) })
}

// SecretOverlap is how long the secret a rotation replaces keeps signing.
const SecretOverlap = 24 * time.Hour

// RotateSecret gives the endpoint a new secret, returned this once; for
// SecretOverlap the old one signs beside it.
func (s *Service) RotateSecret(ctx context.Context, tenantID, id uuid.UUID) (Endpoint, string, error) {
	key, secret, err := newSecret()
	if err != nil {
		return Endpoint{}, "", err
	}
	var ep Endpoint
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		r, err := getEndpoint(tx, tenantID, id, true)
		if err != nil {
			return err
		}
		now := s.opts.Now().UTC()
		r.PreviousSecret, r.PreviousExpiresAt = r.Secret, validTime(now.Add(SecretOverlap))
		if r.Secret, err = s.box.Seal(tenantID, id, key); err != nil {
			return err
		}
		r.UpdatedAt = now
		if err := updateEndpoint(tx, r); err != nil {
			return err
		}
		r.Version++
		ep = r.toModel()
		return nil
	})
	if err != nil {
		return Endpoint{}, "", err
	}
	return ep, secret, nil
}

// SendTest enqueues a webhook.test event for the endpoint alone.
func (s *Service) SendTest(ctx context.Context, tenantID, id uuid.UUID) (Delivery, error) {
	now := s.opts.Now().UTC()
	eventID := uuid.Must(uuid.NewV7())
	data, err := json.Marshal(map[string]any{"endpoint_id": id, "message": "a test event from tenantd"})
	if err != nil {
		return Delivery{}, err
	}
	body, err := payloadOf(EventTest, now, data)
	if err != nil {
		return Delivery{}, err
	}
	var d Delivery
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		if _, err := enabledEndpoint(tx, tenantID, id); err != nil {
			return err
		}
		row := deliveryRow{TenantID: tenantID, ID: uuid.Must(uuid.NewV7()), EndpointID: id, EventID: eventID,
			EventType: EventTest, Origin: OriginTest, Payload: string(body), Status: DeliveryPending,
			NextAttemptAt: validTime(now), CreatedAt: now, UpdatedAt: now}
		if _, err := insertDeliveries(tx, []deliveryRow{row}); err != nil {
			return err
		}
		d = row.toModel()
		return nil
	})
	if err == nil {
		s.out.wake()
	}
	return d, err
}

// MaxRecover is the most events one recover call resends.
const MaxRecover = 10000

// Recover enqueues again every event of the tenant since the given time
// that the endpoint's filter admits (at most MaxRecover), with their
// original ids, and returns how many.
func (s *Service) Recover(ctx context.Context, tenantID, id uuid.UUID, since time.Time) (int, error) {
	now := s.opts.Now().UTC()
	if since.After(now) {
		return 0, fault.Invalid(fault.Field("since", "must not be in the future"))
	}
	n := 0
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		r, err := enabledEndpoint(tx, tenantID, id)
		if err != nil {
			return err
		}
		evs, err := eventsSince(tx, tenantID, since, MaxRecover)
		if err != nil {
			return err
		}
		var rows []deliveryRow
		for _, ev := range evs {
			if !Matches([]string(r.EventTypes), ev.Type) {
				continue
			}
			body, err := payloadOf(ev.Type, ev.CreatedAt, json.RawMessage(ev.Data))
			if err != nil {
				return err
			}
			rows = append(rows, deliveryRow{TenantID: tenantID, ID: uuid.Must(uuid.NewV7()), EndpointID: id, EventID: ev.ID,
				EventType: ev.Type, Origin: OriginRecover, Payload: string(body), NextAttemptAt: validTime(now), CreatedAt: now})
		}
		n = len(rows)
		_, err = insertDeliveries(tx, rows)
		return err
	})
	if err == nil && n > 0 {
		s.out.wake()
	}
	return n, err
}

// Deliveries lists up to limit+1 of the endpoint's deliveries, newest
// first, each with its attempts.
func (s *Service) Deliveries(ctx context.Context, tenantID, id, after uuid.UUID, limit int) ([]Delivery, error) {
	return db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) ([]Delivery, error) {
		if _, err := getEndpoint(tx, tenantID, id, false); err != nil {
			return nil, err
		}
		rows, err := listDeliveries(tx, tenantID, id, after, limit+1)
		if err != nil {
			return nil, err
		}
		ids := make([]uuid.UUID, len(rows))
		for i, r := range rows {
			ids[i] = r.ID
		}
		log, err := attemptsOf(tx, tenantID, ids)
		if err != nil {
			return nil, err
		}
		out := make([]Delivery, len(rows))
		for i, r := range rows {
			out[i] = r.toModel()
			out[i].Log = log[r.ID]
		}
		return out, nil
	})
}

// Retry makes one delivery due now, whatever its state: a failed one is
// tried again (with the attempts after it scheduled as usual), a succeeded
// one is sent again.
func (s *Service) Retry(ctx context.Context, tenantID, id, deliveryID uuid.UUID) (Delivery, error) {
	var d Delivery
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		if _, err := enabledEndpoint(tx, tenantID, id); err != nil {
			return err
		}
		row, err := retryDelivery(tx, tenantID, id, deliveryID, s.opts.Now().UTC())
		d = row.toModel()
		return err
	})
	if err == nil {
		s.out.wake()
	}
	return d, err
}
