package payments

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
)

// SimulatedOptions tune the Simulated gateway.
type SimulatedOptions struct {
	// FailTimes is how many calls for one payment with method card_error
	// fail transiently before it is approved: 0 means
	// DefaultSimulatedFailTimes, a negative number means it never succeeds
	// (a gateway that is down).
	FailTimes int
	// Latency is how long every call takes.
	Latency time.Duration
	// Remember is how many payments the gateway remembers to answer
	// repeated charges idempotently (default 10000).
	Remember int
}

// Defaults of SimulatedOptions.
const (
	DefaultSimulatedFailTimes = 2
	DefaultSimulatedRemember  = 10000
)

// ErrSimulatedFailure is the transient error of the Simulated gateway.
var ErrSimulatedFailure = errors.New("simulated gateway: transient failure")

// Simulated is the built-in payment gateway for development and tests. It
// answers by payment method: card is approved, card_declined is declined,
// card_error fails transiently FailTimes times per payment and is then
// approved. It is idempotent per payment id: a payment it has decided is
// answered the same again.
type Simulated struct {
	opts SimulatedOptions

	mu       sync.Mutex
	payments *lru.Cache[uuid.UUID, *simulatedPayment]
}

// simulatedPayment is what Simulated remembers of one payment.
type simulatedPayment struct {
	failures int     // transient failures served so far
	result   *Result // set once decided
}

// NewSimulated returns a Simulated gateway.
func NewSimulated(opts SimulatedOptions) *Simulated {
	if opts.FailTimes == 0 {
		opts.FailTimes = DefaultSimulatedFailTimes
	}
	if opts.Remember <= 0 {
		opts.Remember = DefaultSimulatedRemember
	}
	cache, err := lru.New[uuid.UUID, *simulatedPayment](opts.Remember)
	if err != nil {
		panic(fmt.Sprintf("simulated gateway: %v", err)) // only for a size <= 0, excluded above
	}
	return &Simulated{opts: opts, payments: cache}
}

// Charge answers c by its method after the configured latency.
func (s *Simulated) Charge(ctx context.Context, c Charge) (Result, error) {
	if s.opts.Latency > 0 {
		t := time.NewTimer(s.opts.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return Result{}, fmt.Errorf("simulated gateway: %w", ctx.Err())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.payments.Get(c.PaymentID)
	if !ok {
		p = &simulatedPayment{}
		s.payments.Add(c.PaymentID, p)
	}
	if p.result != nil {
		return *p.result, nil
	}
	var res Result
	switch c.Method {
	case MethodCard:
		res = Result{Approved: true, Reference: "sim_" + c.PaymentID.String()}
	case MethodCardDeclined:
		res = Result{DeclineReason: "card_declined"}
	case MethodCardError:
		if s.opts.FailTimes < 0 || p.failures < s.opts.FailTimes {
			p.failures++
			return Result{}, ErrSimulatedFailure
		}
		res = Result{Approved: true, Reference: "sim_" + c.PaymentID.String()}
	default:
		return Result{}, Permanent(fmt.Errorf("simulated gateway: unsupported payment method %q", c.Method))
	}
	p.result = &res
	return res, nil
}
