package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/wait"
)

// DefaultReconcileEvery is how often RunReconciler looks for work.
const DefaultReconcileEvery = 2 * time.Second

// reconcileBatch bounds the payments, and the refunds, one pass takes on.
const reconcileBatch = 100

// Reconciled counts what one reconciliation pass settled.
type Reconciled struct {
	Payments int // processing payments given their outcome
	Refunds  int // pending refunds given the gateway's answer
}

// Reconcile settles what was left in progress. It makes one pass over
//
//   - payments still processing longer than the Service's reconcile age
//     (WithReconcileAfter), whose outcome was never written because the
//     process died or the database was down when the gateway answered: the
//     charge's key is closed at the gateway (Void), which answers what
//     became of the charge, and the outcome is written and
//     payment.succeeded or payment.failed appended exactly as Pay would
//     have; a charge the gateway never saw is refused from then on and the
//     payment failed with ReasonGatewayUnavailable, which leaves the order
//     payable;
//   - pending refunds that are due: the saga's refunds for cancelled orders
//     at once, a request's once the request has had the reconcile age to
//     send it, and any the gateway could not take, again after that age.
//
// The candidates come from two SECURITY DEFINER functions that return only
// (tenant, id) pairs; each is then handled in its tenant's transactions.
// Any number of replicas may reconcile at once: a payment is settled under
// its row lock (SKIP LOCKED) and only while still processing, a refund is
// claimed for the reconcile age before it is sent, so each outcome is
// written once. Gateway calls are idempotent by key, so a repeated one
// does no harm. A pass stops early when the gateway is unavailable.
func (s *Service) Reconcile(ctx context.Context) (Reconciled, error) {
	var n Reconciled
	var errs []error
	payments, err := unsettledPayments(s.db.Worker().Unscoped(ctx), s.after, reconcileBatch)
	if err != nil {
		return n, fmt.Errorf("reconcile: list unsettled payments: %w", err)
	}
	for _, x := range payments {
		settled, err := s.reconcilePayment(ctx, x.TenantID, x.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile payment %s of tenant %s: %w", x.ID, x.TenantID, err))
			if errors.Is(err, ErrUnavailable) {
				return n, errors.Join(errs...)
			}
			continue
		}
		if settled {
			n.Payments++
		}
	}
	refunds, err := dueRefunds(s.db.Worker().Unscoped(ctx), reconcileBatch)
	if err != nil {
		return n, errors.Join(append(errs, fmt.Errorf("reconcile: list due refunds: %w", err))...)
	}
	for _, x := range refunds {
		r, claimed, err := s.reconcileRefund(ctx, x.TenantID, x.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile refund %s of tenant %s: %w", x.ID, x.TenantID, err))
			continue
		}
		if claimed && r.Status != RefundPending {
			n.Refunds++
		}
	}
	return n, errors.Join(errs...)
}

// reconcilePayment settles one processing payment from the gateway's
// record. It reports whether this call wrote the outcome.
func (s *Service) reconcilePayment(ctx context.Context, tenantID, id uuid.UUID) (bool, error) {
	var p Payment
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		row, err := findPayment(tx, tenantID, id, false)
		p = toModel(row)
		return err
	})
	if err != nil || p.Status != StatusProcessing {
		return false, err
	}
	// Close the charge's key: the gateway answers the charge if it made
	// one, and otherwise refuses it from now on, so a charge still on its
	// way can never be approved after the payment is failed.
	res, err := s.gateway.Void(ctx, chargeOf(p))
	if err != nil {
		return false, err
	}
	settle(&p, res, nil)
	var settled bool
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		settled = false // WithTenant may run this again
		locked, err := lockProcessing(tx, tenantID, id)
		if err != nil || !locked {
			return err
		}
		_, settled, err = writeOutcome(ctx, tx, p)
		return err
	})
	return settled, err
}

// reconcileRefund claims one due refund and sends it to the gateway. It
// reports whether it claimed the refund, and the refund as it then stands.
func (s *Service) reconcileRefund(ctx context.Context, tenantID, id uuid.UUID) (Refund, bool, error) {
	var row refundRow
	var claimed bool
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
		row, claimed, err = claimRefund(tx, tenantID, id, s.after)
		return err
	})
	if err != nil || !claimed {
		return Refund{}, false, err
	}
	r, err := s.sendRefund(ctx, row)
	return r, true, err
}

// RunReconciler reconciles every interval until ctx ends (see Reconcile).
// It is safe to run on every replica.
func (s *Service) RunReconciler(ctx context.Context, every time.Duration, log *slog.Logger) {
	wait.Every(ctx, every, func() {
		n, err := s.Reconcile(ctx)
		if err != nil && ctx.Err() == nil {
			log.ErrorContext(ctx, "payments: reconciliation left work for the next pass", "err", err)
		}
		if n.Payments > 0 || n.Refunds > 0 {
			log.InfoContext(ctx, "payments: reconciled", "payments", n.Payments, "refunds", n.Refunds)
		}
	})
}
