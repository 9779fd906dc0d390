package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/wait"
)

// Defaults of Options.
const (
	// StreamName is the JetStream stream the relay publishes to.
	StreamName = "TENANTD_EVENTS"
	// SubjectPrefix starts every subject the relay publishes on.
	SubjectPrefix = "tenantd"
	// Subscriber is the relay's subscriber name (its checkpoint).
	Subscriber = "relay-nats"
	// DefaultDuplicateWindow is how long JetStream remembers a message id.
	DefaultDuplicateWindow = time.Hour
	// DefaultPublishTimeout bounds the wait for one acknowledgement.
	DefaultPublishTimeout = 5 * time.Second
)

// Headers the relay sets besides Nats-Msg-Id.
const (
	HeaderTenantID      = "Tenantd-Tenant-Id"
	HeaderStreamID      = "Tenantd-Stream-Id"
	HeaderStreamVersion = "Tenantd-Stream-Version"
	HeaderEventType     = "Tenantd-Event-Type"
	// HeaderDataOmitted is "too-large" on an event sent without its data
	// because it exceeded the server's max_payload.
	HeaderDataOmitted = "Tenantd-Data-Omitted"
)

// Options configure a Relay; zero values take the defaults.
type Options struct {
	// URL is the NATS server URL (NATS_URL), required.
	URL string
	// DuplicateWindow is the stream's de-duplication window, set when the
	// relay creates the stream (default DefaultDuplicateWindow).
	DuplicateWindow time.Duration
	// PublishTimeout bounds the wait for one acknowledgement (default
	// DefaultPublishTimeout).
	PublishTimeout time.Duration
	// Subscriber overrides the subscriber name (tests run several relays).
	Subscriber string
	// ListenURL is the PostgreSQL URL the relay's dispatcher LISTENs on for
	// appends; empty means polling only.
	ListenURL string
	// PollInterval is the dispatcher's poll interval (default 1s).
	PollInterval time.Duration
	// Registerer, when set, receives the relay's counters.
	Registerer prometheus.Registerer
}

// Message is the body of a relayed event: the event as GET /v1/events
// shows it, without the global position.
type Message struct {
	ID        uuid.UUID       `json:"id"`
	TenantID  uuid.UUID       `json:"tenant_id"`
	StreamID  string          `json:"stream_id"`
	Version   int64           `json:"version"`
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
	Metadata  events.Metadata `json:"metadata"`
	CreatedAt time.Time       `json:"created_at"`
}

// Relay publishes the event log to JetStream (see the package doc for its
// guarantees).
type Relay struct {
	opts   Options
	log    *slog.Logger
	events *events.Dispatcher

	published, duplicates, failures prometheus.Counter

	mu sync.Mutex
	js jetstream.JetStream // set while Run runs
	nc *nats.Conn
}

// New returns a relay reading the log through d. It connects nothing:
// Run does.
func New(d *db.DB, log *slog.Logger, opts Options) (*Relay, error) {
	if opts.URL == "" {
		return nil, errors.New("relay: a NATS URL is required")
	}
	if opts.DuplicateWindow <= 0 {
		opts.DuplicateWindow = DefaultDuplicateWindow
	}
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = DefaultPublishTimeout
	}
	if opts.Subscriber == "" {
		opts.Subscriber = Subscriber
	}
	if log == nil {
		log = slog.Default()
	}
	r := &Relay{
		opts: opts,
		log:  log.With("component", "relay", "subscriber", opts.Subscriber),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantd_relay_published_total",
			Help: "Events the relay published and JetStream acknowledged as newly stored."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantd_relay_duplicates_total",
			Help: "Events the relay published again that JetStream recognised by Nats-Msg-Id and dropped."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantd_relay_publish_errors_total",
			Help: "Failed publishes (each one is retried; the relay never skips an event)."}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{r.published, r.duplicates, r.failures} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("relay: register metrics: %w", err)
			}
		}
	}
	// A dispatcher of its own, because the relay must never park an event
	// (it would then go on out of order): it retries without limit.
	r.events = events.NewDispatcher(d, log, events.Options{
		ListenURL:    opts.ListenURL,
		PollInterval: opts.PollInterval,
		MaxAttempts:  math.MaxInt,
	})
	r.events.SubscribeBatch(opts.Subscriber, nil, r.publish)
	return r, nil
}

// Run connects to NATS, makes sure the stream exists, and relays events
// until ctx ends; then it closes the connection and returns nil. It keeps
// trying while NATS is unreachable.
func (r *Relay) Run(ctx context.Context) error {
	nc, err := nats.Connect(r.opts.URL,
		nats.Name("tenantd relay"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				r.log.Warn("relay: disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { r.log.Info("relay: reconnected to NATS") }),
	)
	if err != nil {
		return fmt.Errorf("relay: connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("relay: jetstream: %w", err)
	}
	for attempt := 1; ; attempt++ {
		err := r.ensureStream(ctx, js)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("relay: cannot reach the JetStream stream; retrying", "stream", StreamName, "attempt", attempt, "err", err)
		if !wait.Sleep(ctx, events.DefaultBackoff(attempt)) {
			return nil
		}
	}
	r.mu.Lock()
	r.js, r.nc = js, nc
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.js, r.nc = nil, nil
		r.mu.Unlock()
	}()
	r.log.Info("relay: publishing events to JetStream", "stream", StreamName)
	return r.events.Run(ctx)
}

// Lag returns the age of the oldest event the relay has not published yet,
// keyed by its subscriber name (0 when it is up to date).
func (r *Relay) Lag(ctx context.Context) (map[string]time.Duration, error) {
	return r.events.Lag(ctx)
}

// ensureStream creates the stream when it is missing. An existing stream is
// left as it is; a warning names settings that defeat the relay.
func (r *Relay) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
	defer cancel()
	s, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        StreamName,
			Description: "tenantd's event log, relayed in order per event stream (subject tenantd.<tenant_id>.<event type>)",
			Subjects:    []string{SubjectPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Duplicates:  r.opts.DuplicateWindow,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // another replica created it meanwhile
		}
		if err != nil {
			return fmt.Errorf("create stream %s: %w", StreamName, err)
		}
		r.log.Info("relay: created the JetStream stream", "stream", StreamName, "duplicate_window", r.opts.DuplicateWindow)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read stream %s: %w", StreamName, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Duplicates < r.opts.DuplicateWindow {
		r.log.Warn("relay: the stream's duplicate window is shorter than the relay's; events published again after it are stored twice",
			"stream", StreamName, "duplicate_window", cfg.Duplicates, "want", r.opts.DuplicateWindow)
	}
	return nil
}

// publish is the relay's batch handler: it publishes evs (one tenant's, in
// position order) one at a time, each acknowledged before the next. An
// error rolls back the dispatcher's transaction, so the checkpoint stays
// before the batch and the events are sent again.
func (r *Relay) publish(ctx context.Context, _ *gorm.DB, evs []events.Event) error {
	r.mu.Lock()
	js, nc := r.js, r.nc
	r.mu.Unlock()
	if js == nil {
		return errors.New("relay: not connected")
	}
	for _, e := range evs {
		msg, err := r.message(e, nc.MaxPayload())
		if err != nil {
			return err
		}
		if err := r.publishOne(ctx, js, msg); err != nil {
			r.failures.Inc()
			return fmt.Errorf("relay: publish event %s (%s) of tenant %s: %w", e.ID, e.Type, e.TenantID, err)
		}
	}
	return nil
}

// publishOne publishes msg and waits for its acknowledgement.
func (r *Relay) publishOne(ctx context.Context, js jetstream.JetStream, msg *nats.Msg) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.PublishTimeout)
	defer cancel()
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithExpectStream(StreamName))
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		// The stream is gone (deleted by hand?): create it for the retry.
		if serr := r.ensureStream(ctx, js); serr != nil {
			r.log.Warn("relay: cannot recreate the stream", "stream", StreamName, "err", serr)
		}
	}
	if err != nil {
		return err
	}
	if ack.Duplicate {
		r.duplicates.Inc()
	} else {
		r.published.Inc()
	}
	return nil
}

// message builds the NATS message of e; maxPayload is the server's limit
// (0: unknown).
func (r *Relay) message(e events.Event, maxPayload int64) (*nats.Msg, error) {
	body := Message{ID: e.ID, TenantID: e.TenantID, StreamID: e.StreamID, Version: e.Version, Type: e.Type,
		Data: e.Data, Metadata: e.Metadata, CreatedAt: e.CreatedAt.UTC()}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("relay: marshal event %s: %w", e.ID, err)
	}
	msg := nats.NewMsg(Subject(e.TenantID, e.Type))
	msg.Header.Set(jetstream.MsgIDHeader, e.ID.String())
	msg.Header.Set(HeaderTenantID, e.TenantID.String())
	msg.Header.Set(HeaderStreamID, e.StreamID)
	msg.Header.Set(HeaderStreamVersion, strconv.FormatInt(e.Version, 10))
	msg.Header.Set(HeaderEventType, e.Type)
	// Headers count towards max_payload; 4 KiB leaves room for them.
	if maxPayload > 0 && int64(len(data)) > maxPayload-4096 {
		body.Data = nil
		if data, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("relay: marshal event %s: %w", e.ID, err)
		}
		msg.Header.Set(HeaderDataOmitted, "too-large")
		r.log.Warn("relay: event larger than NATS max_payload sent without its data", "event_id", e.ID,
			"tenant_id", e.TenantID, "type", e.Type, "max_payload", maxPayload)
	}
	msg.Data = data
	return msg, nil
}

// Subject is the subject an event of tenantID and type is published on:
// tenantd.<tenant_id>.<type>, the type's dots separating tokens. Characters
// NATS refuses in a subject (whitespace, controls, the wildcards * and >)
// become '_', and so does an empty token.
func Subject(tenantID uuid.UUID, eventType string) string {
	tokens := strings.Split(eventType, ".")
	for i, tok := range tokens {
		if tok == "" {
			tokens[i] = "_"
			continue
		}
		tokens[i] = strings.Map(func(c rune) rune {
			if c == '*' || c == '>' || unicode.IsSpace(c) || unicode.IsControl(c) || c == unicode.ReplacementChar {
				return '_'
			}
			return c
		}, tok)
	}
	return SubjectPrefix + "." + tenantID.String() + "." + strings.Join(tokens, ".")
}
