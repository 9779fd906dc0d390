package payments

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"
)

// Gateway charges money. Implementations must treat Charge.PaymentID as an
// idempotency key: charging the same payment again must not take the money
// twice but return the first answer.
//
// A decline is an answer, not an error: Result with Approved false. An
// error means the charge could not be decided; it is retried unless marked
// with Permanent.
type Gateway interface {
	Charge(ctx context.Context, c Charge) (Result, error)
}

// Charge is a request to take Amount of Currency with a payment method.
type Charge struct {
	PaymentID uuid.UUID // the idempotency key towards the gateway
	Amount    int64     // minor units of Currency
	Currency  string
	Method    string
}

// Result is the gateway's answer to a charge.
type Result struct {
	Approved      bool
	Reference     string // the gateway's id of the charge
	DeclineReason string // why it declined, when it did
}

// Permanent marks a gateway error that retrying cannot mend (the gateway
// refused the request as malformed, say). The payment fails with
// ReasonGatewayError instead of being retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// ErrUnavailable is returned by Resilient when the gateway cannot be
// reached: the circuit breaker is open, or transient failures outlasted the
// retries.
var ErrUnavailable = errors.New("payment gateway unavailable")

// ResilienceOptions tune Resilient. Zero fields take the defaults.
type ResilienceOptions struct {
	// InitialInterval is the first wait between attempts (default 50ms);
	// each wait grows by Multiplier (default 2) up to MaxInterval (default
	// 500ms), randomized by ±Jitter (a fraction, default 0.5).
	InitialInterval time.Duration
	MaxInterval     time.Duration
	Multiplier      float64
	Jitter          float64
	// MaxElapsed bounds the time spent retrying one charge (default 2s).
	MaxElapsed time.Duration
	// AttemptTimeout bounds one attempt (default 3s); an attempt that runs
	// out counts as a transient failure.
	AttemptTimeout time.Duration

	// TripAfter is how many consecutive failed attempts open the circuit
	// breaker (default 5).
	TripAfter uint32
	// OpenTimeout is how long the breaker stays open before it lets one
	// trial charge through (default 10s).
	OpenTimeout time.Duration
	// HalfOpenRequests is how many trial charges may run at once while the
	// breaker is half-open, and how many must succeed to close it
	// (default 1).
	HalfOpenRequests uint32
	// OnStateChange, if set, is told of every breaker transition (for logs
	// and metrics).
	OnStateChange func(from, to gobreaker.State)
}

// Defaults of ResilienceOptions.
const (
	DefaultInitialInterval = 50 * time.Millisecond
	DefaultMaxInterval     = 500 * time.Millisecond
	DefaultMultiplier      = 2.0
	DefaultJitter          = 0.5
	DefaultMaxElapsed      = 2 * time.Second
	DefaultAttemptTimeout  = 3 * time.Second
	DefaultTripAfter       = 5
	DefaultOpenTimeout     = 10 * time.Second
)

func (o ResilienceOptions) withDefaults() ResilienceOptions {
	if o.InitialInterval <= 0 {
		o.InitialInterval = DefaultInitialInterval
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = DefaultMaxInterval
	}
	if o.MaxInterval < o.InitialInterval {
		o.MaxInterval = o.InitialInterval
	}
	if o.Multiplier < 1 {
		o.Multiplier = DefaultMultiplier
	}
	if o.Jitter <= 0 || o.Jitter >= 1 {
		o.Jitter = DefaultJitter
	}
	if o.MaxElapsed <= 0 {
		o.MaxElapsed = DefaultMaxElapsed
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.TripAfter == 0 {
		o.TripAfter = DefaultTripAfter
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = DefaultOpenTimeout
	}
	if o.HalfOpenRequests == 0 {
		o.HalfOpenRequests = 1
	}
	return o
}

// Resilient wraps a Gateway with retries (exponential backoff with jitter)
// and a circuit breaker. Every attempt goes through the breaker, so
// consecutive failed attempts, across all payments and tenants, open it;
// while it is open, charges fail at once with ErrUnavailable and the
// wrapped gateway is not called. Declines and Permanent errors are answers
// from a working gateway: they are neither retried nor counted as failures.
type Resilient struct {
	next    Gateway
	opts    ResilienceOptions
	breaker *gobreaker.CircuitBreaker[Result]
}

// NewResilient returns next wrapped in retries and a circuit breaker.
func NewResilient(next Gateway, opts ResilienceOptions) *Resilient {
	opts = opts.withDefaults()
	settings := gobreaker.Settings{
		Name:        "payment-gateway",
		MaxRequests: opts.HalfOpenRequests,
		Timeout:     opts.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= opts.TripAfter },
		IsSuccessful: func(err error) bool {
			return err == nil || IsPermanent(err)
		},
		// An attempt abandoned because the caller went away says nothing
		// about the gateway's health.
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
	}
	if opts.OnStateChange != nil {
		settings.OnStateChange = func(_ string, from, to gobreaker.State) { opts.OnStateChange(from, to) }
	}
	return &Resilient{next: next, opts: opts, breaker: gobreaker.NewCircuitBreaker[Result](settings)}
}

// State is the circuit breaker's state.
func (r *Resilient) State() gobreaker.State { return r.breaker.State() }

var errCallerGone = errors.New("caller went away")

// Charge charges through the breaker, retrying transient failures until
// MaxElapsed has passed. It returns ErrUnavailable (wrapping the last
// cause) when the breaker is open or the retries are spent, and a
// Permanent error as it is.
func (r *Resilient) Charge(ctx context.Context, c Charge) (Result, error) {
	attempt := func() (Result, error) {
		res, err := r.breaker.Execute(func() (Result, error) {
			actx, cancel := context.WithTimeout(ctx, r.opts.AttemptTimeout)
			defer cancel()
			res, err := r.next.Charge(actx, c)
			if err != nil && ctx.Err() != nil {
				return res, errors.Join(errCallerGone, err)
			}
			return res, err
		})
		switch {
		case err == nil:
			return res, nil
		case errors.Is(err, gobreaker.ErrOpenState), IsPermanent(err), errors.Is(err, errCallerGone):
			return res, backoff.Permanent(err)
		}
		// Transient failures, and ErrTooManyRequests while a half-open
		// trial is in flight, are worth another try.
		return res, err
	}
	b := &backoff.ExponentialBackOff{
		InitialInterval:     r.opts.InitialInterval,
		RandomizationFactor: r.opts.Jitter,
		Multiplier:          r.opts.Multiplier,
		MaxInterval:         r.opts.MaxInterval,
	}
	res, err := backoff.Retry(ctx, attempt, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(r.opts.MaxElapsed))
	switch {
	case err == nil:
		return res, nil
	case IsPermanent(err):
		return Result{}, err
	case ctx.Err() != nil:
		return Result{}, errors.Join(ctx.Err(), err)
	}
	return Result{}, errors.Join(ErrUnavailable, err)
}
