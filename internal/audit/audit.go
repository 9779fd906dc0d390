package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/wait"
)

// Limits on an event's fields, matching the audit_events table's checks.
const (
	maxActor     = 300
	maxAction    = 200
	maxResource  = 500
	maxRequestID = 128
	// MaxUserAgent is how much of a User-Agent header is kept, in characters.
	MaxUserAgent = 300
	// MaxSummaryBytes bounds an event's canonical summary.
	MaxSummaryBytes = 8 << 10
)

// SystemActor is the actor of events recorded without a principal in the
// context and without Entry.Actor.
const SystemActor = "system"

// Errors of Record.
var (
	ErrNoAction        = errors.New("audit: an entry needs an action")
	ErrSummaryTooLarge = fmt.Errorf("audit: the summary exceeds %d bytes", MaxSummaryBytes)
	ErrBadStatus       = errors.New("audit: status must be 0 or an HTTP status (100-599)")
)

// Entry is what a caller says about one audited action; Record adds who,
// when and from where.
type Entry struct {
	// Actor is who acted; empty means the principal in the context
	// (identity.Principal.Actor()), or SystemActor without one.
	Actor string
	// Action is what happened: "api_key.created", or for request entries the
	// method and route template ("DELETE /v1/api-keys/:id").
	Action string
	// Resource is what it happened to: "api_key:<id>", or a request's path.
	Resource string
	// Status is the HTTP status of the request, or 0 when not known.
	Status int
	// Summary is a small account of the change, conventionally
	// {"before": {…}, "after": {…}} plus facts such as counts. It must never
	// hold secrets, tokens or keys: values under keys that name one
	// ("secret", "password", "token", …) are replaced by "[redacted]" as a
	// safety net, and the whole must encode to at most MaxSummaryBytes.
	Summary map[string]any
}

// Event is one stored audit event: a link of its tenant's chain once
// sealed, before that a row with a position but no seq or hashes.
type Event struct {
	TenantID uuid.UUID
	// Position orders the tenant's events: drawn when the row was inserted
	// (from the sequence events use), sealed into the chain in this order.
	Position   int64
	Seq        int64 // 0 until sealed
	ID         uuid.UUID
	OccurredAt time.Time
	Actor      string
	Action     string
	Resource   string
	Status     int
	Summary    json.RawMessage // a JSON object, canonically encoded
	RequestID  string
	IP         string // "" when unknown
	UserAgent  string
	PrevHash   []byte // nil until sealed
	Hash       []byte // nil until sealed
}

// Sealed reports whether the event is linked into its tenant's chain.
func (e Event) Sealed() bool { return e.Hash != nil }

// Origin is where a request came from: the client's address (as the
// engine's trusted-proxy settings resolve it) and its User-Agent.
type Origin struct {
	IP        string
	UserAgent string
}

type originKey struct{}

// WithOrigin returns ctx carrying o, for the events recorded while serving
// the request.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginFrom returns the request's origin in ctx, if any.
func OriginFrom(ctx context.Context) (Origin, bool) {
	o, ok := ctx.Value(originKey{}).(Origin)
	return o, ok
}

// Record appends e to tenantID's audit trail inside tx, the caller's
// db.WithTenant transaction (or one scoped with db.SetTenant), so the event
// commits or rolls back with the change it describes. The actor defaults to
// the principal in ctx; the request id, client address and User-Agent come
// from ctx. It takes no tenant-wide lock: the row is inserted unsealed, and
// the sealer links it into the tenant's chain after it commits (see
// RunSealer). Its position is drawn under the shared append lock that
// events take too, held to the end of tx: call it late in the transaction.
func Record(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID, e Entry) (err error) {
	_, err = record(ctx, tx, tenantID, e, time.Now())
	return err
}

func record(ctx context.Context, tx *gorm.DB, tenantID uuid.UUID, e Entry, now time.Time) (ev Event, err error) {
	defer wrap(&err, e.Action)
	if tenantID == uuid.Nil {
		return Event{}, db.ErrNoTenant
	}
	ev, err = newEvent(ctx, tenantID, e, now)
	if err != nil {
		return Event{}, err
	}
	if err := insertEvent(tx.WithContext(ctx), ev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// wrap names the entry's action in a non-nil *err.
func wrap(err *error, action string) {
	if *err != nil {
		*err = fmt.Errorf("audit %s: %w", action, *err)
	}
}

// writeTimeout bounds write, retries included.
const writeTimeout = 5 * time.Second

// write records e for tenantID in a transaction of its own, outside any
// request's: the "response" entries and failed-authentication bursts. ctx
// only lends its values (request id, origin); its cancellation does not
// apply. Transient failures (a lost connection, a timeout, a serialization
// failure, a deadlock) are retried with backoff for up to writeTimeout, as
// the same event: should an attempt the driver reported as failed have
// committed after all, the next finds its id taken and stops there.
func (a *Auditor) write(ctx context.Context, tenantID uuid.UUID, e Entry) (err error) {
	defer wrap(&err, e.Action)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	ev, err := newEvent(ctx, tenantID, e, a.now())
	if err != nil {
		return err
	}
	delay := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = a.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error { return insertEvent(tx.WithContext(ctx), ev) })
		switch {
		case err == nil:
			return nil
		case attempt > 1 && db.IsUniqueViolation(err, "audit_events_pkey"):
			return nil
		case !transient(err):
			return err
		}
		a.log.DebugContext(ctx, "audit: writing an entry failed; retrying", "tenant_id", tenantID, "action", e.Action,
			"attempt", attempt, "err", err)
		// Jitter: replicas failing together do not retry together.
		if !wait.Sleep(ctx, delay/2+rand.N(delay/2+1)) {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		delay = min(2*delay, time.Second)
	}
}

// transient reports whether err may go away if the write is tried again:
// not an entry refused by its content, a tenant that does not exist, or
// row-level security refusing it.
func transient(err error) bool {
	if errors.Is(err, ErrNoAction) || errors.Is(err, ErrBadStatus) || errors.Is(err, ErrSummaryTooLarge) ||
		errors.Is(err, db.ErrNoTenant) {
		return false
	}
	if code := db.SQLState(err); code != "" {
		switch code[:2] {
		case "08", "40", "53", "55", "57", "58":
			// connection exception, transaction rollback (40001, 40P01),
			// insufficient resources, object not in prerequisite state
			// (lock timeout), operator intervention (statement timeout,
			// shutdown), system error
			return true
		}
		return false
	}
	return true // the connection, not the statement, failed
}

// newEvent fills in an event from e and ctx, with every field cleaned and
// bounded, but not yet linked into the chain.
func newEvent(ctx context.Context, tenantID uuid.UUID, e Entry, now time.Time) (Event, error) {
	action := clean(e.Action, maxAction)
	if action == "" {
		return Event{}, ErrNoAction
	}
	if e.Status != 0 && (e.Status < 100 || e.Status > 599) {
		return Event{}, ErrBadStatus
	}
	actor := e.Actor
	if actor == "" {
		if p, ok := identity.FromContext(ctx); ok {
			actor = p.Actor()
		}
	}
	actor = clean(actor, maxActor)
	if actor == "" {
		actor = SystemActor
	}
	summary, err := summarize(e.Summary)
	if err != nil {
		return Event{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Event{}, fmt.Errorf("event id: %w", err)
	}
	o, _ := OriginFrom(ctx)
	return Event{
		TenantID:   tenantID,
		ID:         id,
		OccurredAt: now.UTC().Truncate(time.Microsecond),
		Actor:      actor,
		Action:     action,
		Resource:   clean(e.Resource, maxResource),
		Status:     e.Status,
		Summary:    summary,
		RequestID:  clean(identity.RequestID(ctx), maxRequestID),
		IP:         canonicalIP(o.IP),
		UserAgent:  clean(o.UserAgent, MaxUserAgent),
	}, nil
}

// summarize encodes a summary canonically, with secret-looking values
// redacted.
func summarize(s map[string]any) (json.RawMessage, error) {
	if len(s) == 0 {
		return json.RawMessage("{}"), nil
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode summary: %w", err)
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("encode summary: %w", err)
	}
	out, err := canonicalJSON(redact(v))
	if err != nil {
		return nil, fmt.Errorf("encode summary: %w", err)
	}
	if len(out) > MaxSummaryBytes {
		return nil, ErrSummaryTooLarge
	}
	return out, nil
}

// secretWords mark summary keys whose values are never kept.
var secretWords = []string{"secret", "password", "passwd", "token", "credential", "authorization", "private_key", "api_key_hash", "cookie"}

// redact replaces the values of secret-looking keys, at any depth.
func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			lk := strings.ToLower(k)
			secret := false
			for _, w := range secretWords {
				if strings.Contains(lk, w) {
					secret = true
					break
				}
			}
			if secret {
				x[k] = "[redacted]"
			} else {
				x[k] = redact(val)
			}
		}
	case []any:
		for i := range x {
			x[i] = redact(x[i])
		}
	}
	return v
}

// clean makes s safe to store as text: valid UTF-8, without control
// characters (PostgreSQL text cannot hold NUL), at most max characters.
func clean(s string, max int) string {
	ok := utf8.ValidString(s) && utf8.RuneCountInString(s) <= max
	for i := 0; ok && i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			ok = false
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if n == max {
			break
		}
		if unicode.IsControl(r) {
			continue
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// canonicalIP returns the address in s in its one canonical text form
// (without zone), or "" when s is not an address.
func canonicalIP(s string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return ""
	}
	return a.WithZone("").String()
}

// Auditor records the audit trail of requests and of failed
// authentications, seals it into hash chains, and serves it. Events inside a
// service's own transaction need no Auditor: they call Record.
type Auditor struct {
	db       *db.DB
	log      *slog.Logger
	now      func() time.Time
	failures *failures
	seal     sealOptions
}

// Options tune an Auditor.
type Options struct {
	// FailureBurst is how many failed authentications for one tenant within
	// FailureWindow make an auth.failed_burst event; default 10.
	FailureBurst int
	// FailureWindow is the window failed authentications are counted in;
	// default one minute.
	FailureWindow time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// SealInterval is how often the sealer looks for committed rows to seal
	// when it has caught up, and how often a replica without the sealer's
	// lease tries to take it; default 200 ms.
	SealInterval time.Duration
	// SealBatch is how many rows of one tenant a sealing transaction links
	// at most; default 500.
	SealBatch int
	// SealWorkers is how many tenants' chains are sealed at once (each chain
	// by one worker at a time); default 4.
	SealWorkers int
	// LeaseURL is a PostgreSQL URL of the pool's database on which the
	// sealer holds its lease, one connection outside the pool. Empty holds
	// it on a pool connection instead, which a small pool may miss.
	LeaseURL string
}

// New returns an Auditor over d. Wire a.BeforeCommit into d with
// d.SetBeforeCommit so request entries commit with the request's first
// write, and run a.RunSealer so they are sealed into their chains.
func New(d *db.DB, log *slog.Logger, opts Options) *Auditor {
	if opts.FailureBurst <= 0 {
		opts.FailureBurst = 10
	}
	if opts.FailureWindow <= 0 {
		opts.FailureWindow = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SealInterval <= 0 {
		opts.SealInterval = 200 * time.Millisecond
	}
	if opts.SealBatch <= 0 {
		opts.SealBatch = 500
	}
	if opts.SealWorkers <= 0 {
		opts.SealWorkers = 4
	}
	return &Auditor{
		db: d, log: log, now: opts.Now,
		failures: newFailures(opts.FailureBurst, opts.FailureWindow),
		seal: sealOptions{interval: opts.SealInterval, batch: opts.SealBatch, workers: opts.SealWorkers,
			leaseURL: opts.LeaseURL},
	}
}

// List returns up to f.Limit+1 events of the tenant matching f, newest
// first (an extra event means there is a next page).
func (a *Auditor) List(ctx context.Context, tenantID uuid.UUID, f Filter) (evs []Event, err error) {
	err = a.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		evs, err = listEvents(tx.WithContext(ctx), tenantID, f)
		return err
	})
	return evs, err
}
