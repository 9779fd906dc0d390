package payments

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/wait"
)

// SimulatedOptions tune the Simulated gateway.
type SimulatedOptions struct {
	// FailTimes is how many calls for one payment with method card_error
	// fail transiently before it is approved: 0 means
	// DefaultSimulatedFailTimes, a negative number means it never succeeds
	// (a gateway that is down).
	FailTimes int
	// Latency is how long every call takes; a call whose context ends
	// first fails without effect (set it above the Resilient's
	// AttemptTimeout to simulate a gateway that times out).
	Latency time.Duration
	// Remember is how many card_error payments the gateway counts transient
	// failures for (default 10000). The count lives in memory: it is how
	// the simulation misbehaves, not a record of money.
	Remember int
}

// Defaults of SimulatedOptions.
const (
	DefaultSimulatedFailTimes = 2
	DefaultSimulatedRemember  = 10000
)

// ErrSimulatedFailure is the transient error of the Simulated gateway.
var ErrSimulatedFailure = errors.New("simulated gateway: transient failure")

// Reasons the Simulated gateway gives for a refused refund.
const (
	SimulatedChargeNotFound    = "charge_not_found"
	SimulatedChargeNotApproved = "charge_not_approved"
	SimulatedRefundTooLarge    = "amount_exceeds_charge"
)

// Simulated is the built-in payment gateway for development and tests. It
// answers charges by payment method: card is approved, card_declined is
// declined, card_error fails transiently FailTimes times per payment and is
// then approved. It refunds approved charges up to their amount.
//
// Like a real provider it keeps its own books, which outlive any tenantd
// process: every decided charge and refund is stored by its idempotency key
// in the provider's tables (sim_gateway_charges, sim_gateway_refunds), so a
// repeated charge or refund gets the first answer and Get finds a charge
// after a restart, from any replica.
type Simulated struct {
	db   *db.DB
	opts SimulatedOptions

	mu       sync.Mutex
	failures *lru.Cache[uuid.UUID, int] // transient failures served per card_error payment
}

// NewSimulated returns a Simulated gateway keeping its books in d.
func NewSimulated(d *db.DB, opts SimulatedOptions) *Simulated {
	if opts.FailTimes == 0 {
		opts.FailTimes = DefaultSimulatedFailTimes
	}
	if opts.Remember <= 0 {
		opts.Remember = DefaultSimulatedRemember
	}
	cache, err := lru.New[uuid.UUID, int](opts.Remember)
	if err != nil {
		panic(fmt.Sprintf("simulated gateway: %v", err)) // only for a size <= 0, excluded above
	}
	return &Simulated{db: d, opts: opts, failures: cache}
}

// simCharge is a row of sim_gateway_charges.
type simCharge struct {
	IdempotencyKey uuid.UUID `gorm:"column:idempotency_key;primaryKey"`
	Amount         int64     `gorm:"column:amount"`
	Currency       string    `gorm:"column:currency"`
	Method         string    `gorm:"column:method"`
	Status         string    `gorm:"column:status"`
	Reference      string    `gorm:"column:reference"`
	DeclineReason  *string   `gorm:"column:decline_reason"`
}

// TableName maps simCharge to the simulated provider's charges.
func (simCharge) TableName() string { return "sim_gateway_charges" }

func (c simCharge) result() Result {
	r := Result{Approved: c.Status == "approved", Reference: c.Reference}
	if c.DeclineReason != nil {
		r.DeclineReason = *c.DeclineReason
		r.Voided = r.DeclineReason == voidedReason
	}
	return r
}

// voidedReason is the decline reason of a key closed by Void.
const voidedReason = "voided"

// Void closes c's key: the first decision for a key stands, so a charge
// recorded before answers, and a charge arriving after finds the key
// declined.
func (s *Simulated) Void(ctx context.Context, c Charge) (Result, error) {
	if err := s.wait(ctx); err != nil {
		return Result{}, err
	}
	reason := voidedReason
	row := simCharge{IdempotencyKey: c.PaymentID, Amount: c.Amount, Currency: c.Currency, Method: c.Method,
		Status: "declined", DeclineReason: &reason, Reference: "sim_void_" + c.PaymentID.String()}
	return s.decide(ctx, row, "void "+c.PaymentID.String())
}

// decide records row as the answer to its key unless a concurrent call
// with the same key decided first, and returns the answer that stands.
// what names the call in errors.
func (s *Simulated) decide(ctx context.Context, row simCharge, what string) (Result, error) {
	res := s.db.Unscoped(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&row)
	if res.Error != nil {
		return Result{}, fmt.Errorf("simulated gateway: %s: %w", what, res.Error)
	}
	if res.RowsAffected == 0 {
		l, err := s.lookup(ctx, row.IdempotencyKey)
		if err == nil && !l.Found {
			err = errors.New("simulated gateway: charge vanished")
		}
		return l.Result, err
	}
	return row.result(), nil
}

// simRefund is a row of sim_gateway_refunds.
type simRefund struct {
	IdempotencyKey uuid.UUID `gorm:"column:idempotency_key;primaryKey"`
	ChargeKey      uuid.UUID `gorm:"column:charge_key"`
	Amount         int64     `gorm:"column:amount"`
	Status         string    `gorm:"column:status"`
	Reference      *string   `gorm:"column:reference"`
	FailureReason  *string   `gorm:"column:failure_reason"`
}

// TableName maps simRefund to the simulated provider's refunds.
func (simRefund) TableName() string { return "sim_gateway_refunds" }

func (r simRefund) result() RefundResult {
	out := RefundResult{Succeeded: r.Status == "succeeded"}
	if r.Reference != nil {
		out.Reference = *r.Reference
	}
	if r.FailureReason != nil {
		out.FailureReason = *r.FailureReason
	}
	return out
}

// wait takes the configured latency, or fails when ctx ends first.
func (s *Simulated) wait(ctx context.Context) error {
	if s.opts.Latency > 0 && !wait.Sleep(ctx, s.opts.Latency) {
		return fmt.Errorf("simulated gateway: %w", ctx.Err())
	}
	return ctx.Err()
}

// Charge answers c by its method after the configured latency; a payment
// it has decided before is answered the same again.
func (s *Simulated) Charge(ctx context.Context, c Charge) (Result, error) {
	if err := s.wait(ctx); err != nil {
		return Result{}, err
	}
	if l, err := s.lookup(ctx, c.PaymentID); err != nil || l.Found {
		return l.Result, err
	}
	row := simCharge{IdempotencyKey: c.PaymentID, Amount: c.Amount, Currency: c.Currency, Method: c.Method,
		Reference: "sim_" + c.PaymentID.String()}
	switch c.Method {
	case MethodCard:
		row.Status = "approved"
	case MethodCardDeclined:
		reason := "card_declined"
		row.Status, row.DeclineReason = "declined", &reason
	case MethodCardError:
		if s.failTransiently(c.PaymentID) {
			return Result{}, ErrSimulatedFailure
		}
		row.Status = "approved"
	default:
		return Result{}, Permanent(fmt.Errorf("simulated gateway: unsupported payment method %q", c.Method))
	}
	// A concurrent charge with the same key may have decided first: then
	// its answer stands.
	return s.decide(ctx, row, "record charge")
}

// failTransiently counts one more transient failure for a card_error
// payment and reports whether this call should fail.
func (s *Simulated) failTransiently(paymentID uuid.UUID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, _ := s.failures.Get(paymentID)
	if s.opts.FailTimes >= 0 && n >= s.opts.FailTimes {
		return false
	}
	s.failures.Add(paymentID, n+1)
	return true
}

// Get tells what the gateway decided for the charge with paymentID as its
// idempotency key, after the configured latency.
func (s *Simulated) Get(ctx context.Context, paymentID uuid.UUID) (Lookup, error) {
	if err := s.wait(ctx); err != nil {
		return Lookup{}, err
	}
	return s.lookup(ctx, paymentID)
}

func (s *Simulated) lookup(ctx context.Context, paymentID uuid.UUID) (Lookup, error) {
	var rows []simCharge
	if err := s.db.Unscoped(ctx).Where("idempotency_key = ?", paymentID).Limit(1).Find(&rows).Error; err != nil {
		return Lookup{}, fmt.Errorf("simulated gateway: look up charge: %w", err)
	}
	if len(rows) == 0 {
		return Lookup{}, nil
	}
	return Lookup{Found: true, Result: rows[0].result()}, nil
}

// Refund gives back r.Amount of an approved charge after the configured
// latency, never more in all than the charge took; a refund it has
// decided before is answered the same again. A charge's refunds are
// decided one at a time, under its row lock.
func (s *Simulated) Refund(ctx context.Context, r RefundRequest) (RefundResult, error) {
	if r.Amount <= 0 {
		return RefundResult{}, Permanent(fmt.Errorf("simulated gateway: refund amount %d is not positive", r.Amount))
	}
	if err := s.wait(ctx); err != nil {
		return RefundResult{}, err
	}
	var out RefundResult
	err := s.db.Unscoped(ctx).Transaction(func(tx *gorm.DB) error {
		var charges []simCharge
		if err := tx.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate}).
			Where("idempotency_key = ?", r.PaymentID).Limit(1).Find(&charges).Error; err != nil {
			return err
		}
		if len(charges) == 0 {
			// Nothing to record against: asked again, it is decided again.
			out = RefundResult{FailureReason: SimulatedChargeNotFound}
			return nil
		}
		var earlier []simRefund
		if err := tx.Where("idempotency_key = ?", r.RefundID).Limit(1).Find(&earlier).Error; err != nil {
			return err
		}
		if len(earlier) == 1 {
			out = earlier[0].result()
			return nil
		}
		var refunded int64
		if err := tx.Raw(`SELECT coalesce(sum(amount), 0)::bigint FROM sim_gateway_refunds
			WHERE charge_key = ? AND status = 'succeeded'`, r.PaymentID).Scan(&refunded).Error; err != nil {
			return err
		}
		row := simRefund{IdempotencyKey: r.RefundID, ChargeKey: r.PaymentID, Amount: r.Amount}
		var reason string
		switch charge := charges[0]; {
		case charge.Status != "approved":
			reason = SimulatedChargeNotApproved
		case refunded+r.Amount > charge.Amount:
			reason = SimulatedRefundTooLarge
		}
		if reason != "" {
			row.Status, row.FailureReason = "failed", &reason
		} else {
			ref := "simre_" + r.RefundID.String()
			row.Status, row.Reference = "succeeded", &ref
		}
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		out = row.result()
		return nil
	})
	if err != nil {
		return RefundResult{}, fmt.Errorf("simulated gateway: refund: %w", err)
	}
	return out, nil
}
