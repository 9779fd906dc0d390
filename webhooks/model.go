package webhooks

import (
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
)

// Endpoint statuses.
const (
	StatusEnabled  = "enabled"
	StatusDisabled = "disabled"
)

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliverySucceeded = "succeeded"
	DeliveryFailed    = "failed"
)

// Where a delivery came from.
const (
	OriginEvent   = "event"
	OriginTest    = "test"
	OriginRecover = "recover"
)

// EventTest is the type of the event POST /v1/webhooks/{id}/test sends.
const EventTest = "webhook.test"

// Reasons an endpoint is disabled.
const (
	ReasonGone    = "the endpoint answered 410 Gone"
	ReasonFailing = "every delivery failed for 3 days"
	ReasonManual  = "disabled through the API"
)

// Limits of the endpoint fields, matching the webhook_endpoints table.
const (
	maxURL         = 2000
	maxDescription = 500
	maxEventTypes  = 100
	maxEventType   = 200
)

// Sentinel errors of the module.
var (
	// ErrNotFound: no such endpoint or delivery in the tenant (another
	// tenant's are not found either).
	ErrNotFound error = fault.New(fault.NotFound, "no such webhook endpoint")
	// ErrDeliveryNotFound: no such delivery of the endpoint.
	ErrDeliveryNotFound error = fault.New(fault.NotFound, "no such webhook delivery")
	// ErrVersionMismatch: If-Match named another version of the endpoint.
	ErrVersionMismatch error = fault.New(fault.PreconditionFailed, "the webhook endpoint changed since it was read (If-Match)")
	// ErrDisabled: the endpoint is disabled, so nothing is sent to it.
	ErrDisabled error = fault.New(fault.Conflict, "the webhook endpoint is disabled: enable it first (PATCH status)")
)

// Endpoint is where a tenant receives its events.
type Endpoint struct {
	ID             uuid.UUID
	TenantID       uuid.UUID
	URL            string
	Description    string
	EventTypes     []string
	Status         string
	DisabledReason string
	// PreviousExpiresAt is when the secret replaced by the last rotation
	// stops signing; zero when only one secret signs.
	PreviousExpiresAt time.Time
	FailingSince      time.Time
	Version           int64
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Accepts reports whether the endpoint subscribed to events of type typ:
// a type listed exactly, "*", or a prefix ending in ".*" ("order.*").
func (e Endpoint) Accepts(typ string) bool {
	return Matches(e.EventTypes, typ)
}

// Matches reports whether a filter of event types admits typ.
func Matches(filter []string, typ string) bool {
	for _, f := range filter {
		if f == "*" || f == typ {
			return true
		}
		if prefix, ok := strings.CutSuffix(f, "*"); ok && strings.HasSuffix(prefix, ".") && strings.HasPrefix(typ, prefix) {
			return true
		}
	}
	return false
}

// NewEndpoint is an endpoint to create.
type NewEndpoint struct {
	URL         string
	EventTypes  []string
	Description string
}

// EndpointPatch changes an endpoint; nil fields are kept.
type EndpointPatch struct {
	URL         *string
	EventTypes  []string // nil: kept
	Description *string
	Status      *string
	// IfMatch, when non-zero, is the version the change expects.
	IfMatch int64
}

var eventTypePattern = regexp.MustCompile(`^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$`)

// checkURL validates an endpoint URL against the guard's rules at
// registration: an absolute https URL (http only where private targets are
// allowed), no credentials, and a host the guard admits.
func checkURL(raw string, guard HostChecker, allowHTTP bool, f *fault.Fields) {
	if raw == "" {
		f.Add("url", "is required")
		return
	}
	if len(raw) > maxURL {
		f.Add("url", "must be at most 2000 characters")
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		f.Add("url", "must be an absolute URL")
	case u.Scheme != "https" && !(allowHTTP && u.Scheme == "http"):
		f.Add("url", "must use https")
	case u.User != nil:
		f.Add("url", "must not carry credentials")
	case u.Fragment != "":
		f.Add("url", "must not have a fragment")
	default:
		if err := guard.CheckHost(u.Hostname()); err != nil {
			f.Add("url", "is not allowed: "+err.Error())
		}
	}
}

func checkEventTypes(types []string, f *fault.Fields) {
	if len(types) == 0 {
		f.Add("event_types", "must list at least one event type (or \"*\")")
		return
	}
	if len(types) > maxEventTypes {
		f.Add("event_types", "must list at most 100 event types")
		return
	}
	for _, t := range types {
		if len(t) > maxEventType || !eventTypePattern.MatchString(t) {
			f.Add("event_types", "event type "+strings.ToValidUTF8(t[:min(len(t), 40)], "?")+" must be a type such as order.placed, a prefix such as order.*, or *")
			return
		}
	}
}

func normalizeTypes(types []string) []string {
	out := slices.Clone(types)
	slices.Sort(out)
	return slices.Compact(out)
}

// Delivery is one event to send to one endpoint, with its state.
type Delivery struct {
	ID             uuid.UUID
	TenantID       uuid.UUID
	EndpointID     uuid.UUID
	EventID        uuid.UUID
	EventType      string
	Origin         string
	Payload        []byte
	Status         string
	Attempts       int
	NextAttemptAt  time.Time // zero unless pending
	LastAttemptAt  time.Time
	LastStatusCode int
	LastLatency    time.Duration
	LastError      string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// Log is the delivery's attempts, oldest first (filled by Deliveries).
	Log []Attempt
}

// Attempt is one try to send a delivery.
type Attempt struct {
	Number      int
	At          time.Time
	StatusCode  int // 0 when no response came
	Latency     time.Duration
	Error       string
	NextRetryAt time.Time // zero when no retry follows
}

// Payload is the Standard Webhooks body: {"type","timestamp","data"}.
type Payload struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Schedule is the delay before each retry: Schedule[i] follows the
// (i+1)-th failed attempt. After the last one the delivery fails.
type Schedule []time.Duration

// DefaultSchedule is the Standard Webhooks retry schedule.
var DefaultSchedule = Schedule{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 24 * time.Hour}

// Next returns the delay after the attempt-th failed attempt, with up to
// ±10 % jitter so that retries of many deliveries spread out, and false
// when no retry follows.
func (s Schedule) Next(attempt int, jitter func() float64) (time.Duration, bool) {
	if attempt < 1 || attempt > len(s) {
		return 0, false
	}
	d := s[attempt-1]
	if jitter == nil {
		jitter = rand.Float64
	}
	return d + time.Duration((jitter()*0.2-0.1)*float64(d)), true
}

// FailingLimit is how long an endpoint may fail every delivery before it
// is disabled.
const FailingLimit = 72 * time.Hour
