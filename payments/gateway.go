package payments

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"
)

// Gateway is the payment provider: it charges money, tells what became of
// a charge, and gives money back. Implementations must treat
// Charge.PaymentID and RefundRequest.RefundID as idempotency keys: the same
// charge or refund sent again must not move money twice but return the
// first answer, and Get must find a charge by the key it was sent with.
//
// A decline (or a refused refund) is an answer, not an error: Result with
// Approved false, RefundResult with Succeeded false, Lookup with Found
// false. An error means the call could not be decided; it is retried unless
// marked with Permanent.
type Gateway interface {
	Charge(ctx context.Context, c Charge) (Result, error)
	// Get looks up the charge sent with paymentID as its idempotency key.
	Get(ctx context.Context, paymentID uuid.UUID) (Lookup, error)
	Refund(ctx context.Context, r RefundRequest) (RefundResult, error)
	// Void closes the idempotency key of c at the gateway: it answers the
	// charge made with that key or, when none was made, records the key as
	// voided, so that the charge, should it still be on its way, is
	// refused. A payment is only ever given up as failed after Void: a
	// charge the gateway has "not seen" may yet arrive and be approved.
	Void(ctx context.Context, c Charge) (Result, error)
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
	// Voided: no charge was made with the key, and Void has closed it.
	Voided bool
}

// Lookup is what the gateway knows of a charge: nothing (Found false: it
// never received the charge, or not yet), or the answer it gave.
type Lookup struct {
	Found  bool
	Result Result // when Found
}

// RefundRequest asks the gateway to give back Amount of a charge.
type RefundRequest struct {
	RefundID  uuid.UUID // the idempotency key towards the gateway
	PaymentID uuid.UUID // the charge's idempotency key
	Amount    int64     // minor units of Currency
	Currency  string
}

// RefundResult is the gateway's answer to a refund.
type RefundResult struct {
	Succeeded     bool
	Reference     string // the gateway's id of the refund
	FailureReason string // why it refused, when it did
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
	// MaxElapsed bounds the time spent retrying one call (default 2s).
	MaxElapsed time.Duration
	// AttemptTimeout bounds one attempt (default 3s); an attempt that runs
	// out counts as a transient failure.
	AttemptTimeout time.Duration

	// TripAfter is how many consecutive failed attempts open the circuit
	// breaker (default 5).
	TripAfter uint32
	// OpenTimeout is how long the breaker stays open before it lets one
	// trial call through (default 10s).
	OpenTimeout time.Duration
	// HalfOpenRequests is how many trial calls may run at once while the
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
// and a circuit breaker. Every attempt of a charge, lookup or refund goes
// through the one breaker, so consecutive failed attempts, across all
// payments and tenants, open it; while it is open, calls fail at once with
// ErrUnavailable and the wrapped gateway is not called. Answers (a decline,
// a charge not found, a refused refund) and Permanent errors come from a
// working gateway: they are neither retried nor counted as failures.
type Resilient struct {
	next    Gateway
	opts    ResilienceOptions
	breaker *gobreaker.CircuitBreaker[any]
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
	return &Resilient{next: next, opts: opts, breaker: gobreaker.NewCircuitBreaker[any](settings)}
}

// State is the circuit breaker's state.
func (r *Resilient) State() gobreaker.State { return r.breaker.State() }

var errCallerGone = errors.New("caller went away")

// Charge charges through the breaker, retrying transient failures until
// MaxElapsed has passed. It returns ErrUnavailable (wrapping the last
// cause) when the breaker is open or the retries are spent, and a
// Permanent error as it is.
func (r *Resilient) Charge(ctx context.Context, c Charge) (Result, error) {
	return call(ctx, r, func(ctx context.Context) (Result, error) { return r.next.Charge(ctx, c) })
}

// Get looks a charge up as Charge charges: through the breaker, with
// retries, ErrUnavailable when the gateway cannot be asked.
func (r *Resilient) Get(ctx context.Context, paymentID uuid.UUID) (Lookup, error) {
	return call(ctx, r, func(ctx context.Context) (Lookup, error) { return r.next.Get(ctx, paymentID) })
}

// Void closes a charge's key with retries, but around the breaker rather
// than through it: it is called right after charges failed, when the
// breaker may well be open, and it is what decides whether a payment can
// be given up (see Gateway.Void). ErrUnavailable when the gateway cannot
// be reached.
func (r *Resilient) Void(ctx context.Context, c Charge) (Result, error) {
	attempt := func() (Result, error) {
		actx, cancel := context.WithTimeout(ctx, r.opts.AttemptTimeout)
		defer cancel()
		res, err := r.next.Void(actx, c)
		if err != nil && (IsPermanent(err) || ctx.Err() != nil) {
			return res, backoff.Permanent(err)
		}
		return res, err
	}
	res, err := retry(ctx, r, attempt)
	if err != nil && !IsPermanent(err) {
		return Result{}, errors.Join(ErrUnavailable, err)
	}
	return res, err
}

// Refund refunds as Charge charges: through the breaker, with retries,
// ErrUnavailable when the gateway cannot be reached.
func (r *Resilient) Refund(ctx context.Context, rr RefundRequest) (RefundResult, error) {
	return call(ctx, r, func(ctx context.Context) (RefundResult, error) { return r.next.Refund(ctx, rr) })
}

// call runs op through r's breaker, each attempt bounded by AttemptTimeout,
// retrying transient failures with backoff until MaxElapsed has passed.
func call[T any](ctx context.Context, r *Resilient, op func(context.Context) (T, error)) (T, error) {
	var zero T
	sent := false // whether any attempt reached the gateway
	attempt := func() (T, error) {
		v, err := r.breaker.Execute(func() (any, error) {
			sent = true
			actx, cancel := context.WithTimeout(ctx, r.opts.AttemptTimeout)
			defer cancel()
			v, err := op(actx)
			if err != nil && ctx.Err() != nil {
				return v, errors.Join(errCallerGone, err)
			}
			return v, err
		})
		res, _ := v.(T) // v is nil when the breaker refused the attempt
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
	res, err := retry(ctx, r, attempt)
	switch {
	case err == nil:
		return res, nil
	case IsPermanent(err):
		return zero, err
	case ctx.Err() != nil:
		err = errors.Join(ctx.Err(), err)
	default:
		err = errors.Join(ErrUnavailable, err)
	}
	if !sent {
		err = errors.Join(ErrNotSent, err)
	}
	return zero, err
}

// retry runs attempt until it succeeds or fails with a backoff.Permanent
// error, backing off between attempts as r's options say, for at most
// MaxElapsed.
func retry[T any](ctx context.Context, r *Resilient, attempt func() (T, error)) (T, error) {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     r.opts.InitialInterval,
		RandomizationFactor: r.opts.Jitter,
		Multiplier:          r.opts.Multiplier,
		MaxInterval:         r.opts.MaxInterval,
	}
	return backoff.Retry(ctx, attempt, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(r.opts.MaxElapsed))
}

// ErrNotSent: no attempt of the call reached the gateway (the circuit
// breaker refused every one), so the gateway cannot have acted on it.
var ErrNotSent = errors.New("payments: the call never reached the gateway")
