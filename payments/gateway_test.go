package payments_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"

	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/payments"
)

var errFlaky = errors.New("connection reset")

// scripted is a gateway whose answers a test switches: it fails with
// errFlaky while failing is set, and approves otherwise.
type scripted struct {
	calls   atomic.Int64
	failing atomic.Bool
	err     error // the error while failing; errFlaky when nil
}

func (g *scripted) Charge(context.Context, payments.Charge) (payments.Result, error) {
	if err := g.fail(); err != nil {
		return payments.Result{}, err
	}
	return payments.Result{Approved: true, Reference: "ref"}, nil
}

func (g *scripted) Get(context.Context, uuid.UUID) (payments.Lookup, error) {
	if err := g.fail(); err != nil {
		return payments.Lookup{}, err
	}
	return payments.Lookup{}, nil
}

func (g *scripted) Void(context.Context, payments.Charge) (payments.Result, error) {
	if err := g.fail(); err != nil {
		return payments.Result{}, err
	}
	return payments.Result{Voided: true, DeclineReason: "voided"}, nil
}

func (g *scripted) Refund(context.Context, payments.RefundRequest) (payments.RefundResult, error) {
	if err := g.fail(); err != nil {
		return payments.RefundResult{}, err
	}
	return payments.RefundResult{Succeeded: true, Reference: "ref"}, nil
}

// fail counts a call and returns the error it should fail with, if any.
func (g *scripted) fail() error {
	g.calls.Add(1)
	if !g.failing.Load() {
		return nil
	}
	if g.err != nil {
		return g.err
	}
	return errFlaky
}

func charge(method string) payments.Charge {
	return payments.Charge{PaymentID: uuid.Must(uuid.NewV7()), Amount: 100, Currency: "EUR", Method: method}
}

func TestSimulated(t *testing.T) {
	t.Parallel()
	type answer struct {
		approved bool
		decline  string
		err      bool
	}
	ok := answer{approved: true}
	fail := answer{err: true}
	tests := []struct {
		name   string
		opts   payments.SimulatedOptions
		method string
		want   []answer // one per call with the same payment id
	}{
		{"card is approved, again on a repeat", payments.SimulatedOptions{}, payments.MethodCard, []answer{ok, ok}},
		{"card_declined is declined", payments.SimulatedOptions{}, payments.MethodCardDeclined,
			[]answer{{decline: "card_declined"}, {decline: "card_declined"}}},
		{"card_error fails twice by default", payments.SimulatedOptions{}, payments.MethodCardError, []answer{fail, fail, ok, ok}},
		{"card_error fails FailTimes times", payments.SimulatedOptions{FailTimes: 4}, payments.MethodCardError,
			[]answer{fail, fail, fail, fail, ok}},
		{"card_error with negative FailTimes never succeeds", payments.SimulatedOptions{FailTimes: -1}, payments.MethodCardError,
			[]answer{fail, fail, fail, fail, fail, fail}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := simulated(t, tt.opts)
			c := charge(tt.method)
			var reference string
			for i, want := range tt.want {
				res, err := g.Charge(context.Background(), c)
				got := answer{approved: res.Approved, decline: res.DeclineReason, err: err != nil}
				if got != want {
					t.Fatalf("call %d: got %+v (err %v), want %+v", i+1, got, err, want)
				}
				if err != nil && (payments.IsPermanent(err) || !errors.Is(err, payments.ErrSimulatedFailure)) {
					t.Errorf("call %d: got error %v, want the transient ErrSimulatedFailure", i+1, err)
				}
				if res.Approved {
					if reference != "" && res.Reference != reference {
						t.Errorf("call %d: got reference %q, want the first answer's %q", i+1, res.Reference, reference)
					}
					reference = res.Reference
				}
			}
		})
	}

	t.Run("unknown method is a permanent error", func(t *testing.T) {
		t.Parallel()
		_, err := simulated(t, payments.SimulatedOptions{}).Charge(context.Background(), charge("cash"))
		if !payments.IsPermanent(err) {
			t.Errorf("got %v, want a permanent error", err)
		}
	})
	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		g := simulated(t, payments.SimulatedOptions{Latency: 30 * time.Millisecond})
		start := time.Now()
		if _, err := g.Charge(context.Background(), charge(payments.MethodCard)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 30*time.Millisecond {
			t.Errorf("got an answer after %v, want at least 30ms", d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		if _, err := g.Charge(ctx, charge(payments.MethodCard)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want the context's deadline error", err)
		}
	})
}

func TestResilientRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		sim       payments.SimulatedOptions
		method    string
		wantCalls int64
		wantOK    bool
		wantErr   func(error) bool
	}{
		{"approved at once", payments.SimulatedOptions{}, payments.MethodCard, 1, true, nil},
		{"a decline is not retried", payments.SimulatedOptions{}, payments.MethodCardDeclined, 1, false, nil},
		{"transient failures are retried until success", payments.SimulatedOptions{FailTimes: 3}, payments.MethodCardError, 4, true, nil},
		{"a permanent error is not retried", payments.SimulatedOptions{}, "cash", 1, false, payments.IsPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := &countingGateway{next: simulated(t, tt.sim)}
			r := payments.NewResilient(g, fastRetries)
			res, err := r.Charge(context.Background(), charge(tt.method))
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tt.wantErr != nil && !tt.wantErr(err):
				t.Fatalf("got error %v, want a permanent one", err)
			}
			if res.Approved != tt.wantOK {
				t.Errorf("got approved %v, want %v", res.Approved, tt.wantOK)
			}
			if got := g.calls.Load(); got != tt.wantCalls {
				t.Errorf("got %d gateway calls, want %d", got, tt.wantCalls)
			}
			if s := r.State(); s != gobreaker.StateClosed {
				t.Errorf("got breaker %s, want closed", s)
			}
		})
	}

	t.Run("retries end after MaxElapsed", func(t *testing.T) {
		t.Parallel()
		g := &scripted{}
		g.failing.Store(true)
		opts := fastRetries
		opts.MaxElapsed = 50 * time.Millisecond
		opts.TripAfter = 1000
		r := payments.NewResilient(g, opts)
		start := time.Now()
		_, err := r.Charge(context.Background(), charge(payments.MethodCard))
		if !errors.Is(err, payments.ErrUnavailable) || !errors.Is(err, errFlaky) {
			t.Errorf("got %v, want ErrUnavailable wrapping the last failure", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("got an answer after %v, want about 50ms", d)
		}
		if n := g.calls.Load(); n < 3 {
			t.Errorf("got %d calls, want several retries", n)
		}
	})
	t.Run("an attempt that hangs times out and is retried", func(t *testing.T) {
		t.Parallel()
		var calls atomic.Int64
		hang := gatewayFunc(func(ctx context.Context, c payments.Charge) (payments.Result, error) {
			if calls.Add(1) == 1 {
				<-ctx.Done()
				return payments.Result{}, ctx.Err()
			}
			return payments.Result{Approved: true}, nil
		})
		opts := fastRetries
		opts.AttemptTimeout = 20 * time.Millisecond
		res, err := payments.NewResilient(hang, opts).Charge(context.Background(), charge(payments.MethodCard))
		if err != nil || !res.Approved || calls.Load() != 2 {
			t.Errorf("got %+v, %v after %d calls, want approved after 2", res, err, calls.Load())
		}
	})
}

// gatewayFunc adapts a charging function to payments.Gateway; it has no
// record of charges (Get finds none) and refunds anything.
type gatewayFunc func(ctx context.Context, c payments.Charge) (payments.Result, error)

func (f gatewayFunc) Charge(ctx context.Context, c payments.Charge) (payments.Result, error) {
	return f(ctx, c)
}

func (f gatewayFunc) Void(context.Context, payments.Charge) (payments.Result, error) {
	return payments.Result{Voided: true, DeclineReason: "voided"}, nil
}

func (f gatewayFunc) Get(context.Context, uuid.UUID) (payments.Lookup, error) {
	return payments.Lookup{}, nil
}

func (f gatewayFunc) Refund(context.Context, payments.RefundRequest) (payments.RefundResult, error) {
	return payments.RefundResult{Succeeded: true}, nil
}

// TestResilientBreaker walks the breaker through its states with a 500ms
// cool-down: closed, open after TripAfter consecutive failures (answering at
// once without calling the gateway), half-open after the cool-down, and
// closed again after a successful trial charge; a failed trial reopens it.
func TestResilientBreaker(t *testing.T) {
	t.Parallel()
	const coolDown = 500 * time.Millisecond
	g := &scripted{}
	var mu sync.Mutex
	var transitions []string
	opts := payments.ResilienceOptions{
		InitialInterval: time.Millisecond,
		MaxInterval:     2 * time.Millisecond,
		MaxElapsed:      time.Second,
		TripAfter:       3,
		OpenTimeout:     coolDown,
		OnStateChange: func(from, to gobreaker.State) {
			mu.Lock()
			defer mu.Unlock()
			transitions = append(transitions, from.String()+"→"+to.String())
		},
	}
	r := payments.NewResilient(g, opts)
	ctx := context.Background()

	// A failing gateway trips the breaker within one charge: three failed
	// attempts, then the fourth is refused by the open breaker.
	g.failing.Store(true)
	_, err := r.Charge(ctx, charge(payments.MethodCard))
	if !errors.Is(err, payments.ErrUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("got %v, want ErrUnavailable from the open breaker", err)
	}
	if n := g.calls.Load(); n != 3 {
		t.Errorf("got %d calls before the breaker opened, want 3", n)
	}
	if s := r.State(); s != gobreaker.StateOpen {
		t.Fatalf("got breaker %s, want open", s)
	}

	// While open: fast failure, the gateway is not called, even though it
	// has recovered.
	g.failing.Store(false)
	start := time.Now()
	_, err = r.Charge(ctx, charge(payments.MethodCard))
	if elapsed := time.Since(start); elapsed >= coolDown {
		t.Errorf("got an answer after %v, want it at once (under %v)", elapsed, coolDown)
	}
	if !errors.Is(err, payments.ErrUnavailable) {
		t.Errorf("got %v, want ErrUnavailable", err)
	}
	if n := g.calls.Load(); n != 3 {
		t.Errorf("got %d calls while open, want still 3", n)
	}

	// After the cool-down a trial charge goes through; its success closes
	// the breaker.
	waitState(t, r, gobreaker.StateHalfOpen, 10*coolDown)
	res, err := r.Charge(ctx, charge(payments.MethodCard))
	if err != nil || !res.Approved {
		t.Fatalf("got %+v, %v after the cool-down, want approved", res, err)
	}
	if s := r.State(); s != gobreaker.StateClosed {
		t.Errorf("got breaker %s after a successful trial, want closed", s)
	}

	// Trip it again; a failed trial charge reopens it.
	g.failing.Store(true)
	if _, err := r.Charge(ctx, charge(payments.MethodCard)); !errors.Is(err, payments.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	waitState(t, r, gobreaker.StateHalfOpen, 10*coolDown)
	calls := g.calls.Load()
	if _, err := r.Charge(ctx, charge(payments.MethodCard)); !errors.Is(err, payments.ErrUnavailable) {
		t.Errorf("got %v, want ErrUnavailable after a failed trial", err)
	}
	if n := g.calls.Load() - calls; n != 1 {
		t.Errorf("got %d calls in the half-open state, want 1 trial", n)
	}
	if s := r.State(); s != gobreaker.StateOpen {
		t.Errorf("got breaker %s after a failed trial, want open", s)
	}

	mu.Lock()
	defer mu.Unlock()
	want := []string{"closed→open", "open→half-open", "half-open→closed", "closed→open", "open→half-open", "half-open→open"}
	if len(transitions) != len(want) {
		t.Fatalf("got transitions %v, want %v", transitions, want)
	}
	for i := range want {
		if transitions[i] != want[i] {
			t.Errorf("got transitions %v, want %v", transitions, want)
			break
		}
	}
}

// TestResilientBreakerIgnoresAnswers proves that declines and permanent
// errors, answers of a working gateway, never trip the breaker.
func TestResilientBreakerIgnoresAnswers(t *testing.T) {
	t.Parallel()
	opts := fastRetries
	opts.TripAfter = 2
	r := payments.NewResilient(simulated(t, payments.SimulatedOptions{}), opts)
	for i := range 5 {
		if res, err := r.Charge(context.Background(), charge(payments.MethodCardDeclined)); err != nil || res.Approved {
			t.Fatalf("decline %d: got %+v, %v, want a decline", i, res, err)
		}
		if _, err := r.Charge(context.Background(), charge("cash")); !payments.IsPermanent(err) {
			t.Fatalf("permanent %d: got %v, want a permanent error", i, err)
		}
	}
	if s := r.State(); s != gobreaker.StateClosed {
		t.Errorf("got breaker %s, want closed", s)
	}
}

// waitState polls until the breaker reports want, for at most limit.
func waitState(t *testing.T, r *payments.Resilient, want gobreaker.State, limit time.Duration) {
	t.Helper()
	testenv.Eventually(t, limit, func() (bool, string) {
		s := r.State()
		return s == want, fmt.Sprintf("got breaker %s, want %s", s, want)
	})
}
