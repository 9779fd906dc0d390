package payments

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/page"
)

// paymentRow is a row of the payments table.
type paymentRow struct {
	TenantID         uuid.UUID      `gorm:"column:tenant_id;primaryKey"`
	ID               uuid.UUID      `gorm:"column:id;primaryKey"`
	OrderID          uuid.UUID      `gorm:"column:order_id"`
	Status           string         `gorm:"column:status"`
	Amount           int64          `gorm:"column:amount"`
	Currency         string         `gorm:"column:currency"`
	PaymentMethod    string         `gorm:"column:payment_method"`
	FailureReason    sql.NullString `gorm:"column:failure_reason"`
	DeclineReason    sql.NullString `gorm:"column:decline_reason"`
	GatewayReference sql.NullString `gorm:"column:gateway_reference"`
	Captured         int64          `gorm:"column:captured"`
	Refunded         int64          `gorm:"column:refunded"`
	Version          int            `gorm:"column:version"`
	CreatedAt        time.Time      `gorm:"column:created_at"`
	UpdatedAt        time.Time      `gorm:"column:updated_at"`
}

// TableName maps paymentRow to the payments table.
func (paymentRow) TableName() string { return "payments" }

// refundRow is a row of the refunds table.
type refundRow struct {
	TenantID         uuid.UUID      `gorm:"column:tenant_id;primaryKey"`
	ID               uuid.UUID      `gorm:"column:id;primaryKey"`
	PaymentID        uuid.UUID      `gorm:"column:payment_id"`
	Amount           int64          `gorm:"column:amount"`
	Currency         string         `gorm:"column:currency"`
	Status           string         `gorm:"column:status"`
	Reason           string         `gorm:"column:reason"`
	FailureReason    sql.NullString `gorm:"column:failure_reason"`
	GatewayReference sql.NullString `gorm:"column:gateway_reference"`
	AttemptAfter     time.Time      `gorm:"column:attempt_after"`
	CreatedAt        time.Time      `gorm:"column:created_at"`
	UpdatedAt        time.Time      `gorm:"column:updated_at"`
}

// TableName maps refundRow to the refunds table.
func (refundRow) TableName() string { return "refunds" }

// refundColumns lists refundRow's columns for RETURNING clauses.
const refundColumns = `tenant_id, id, payment_id, amount, currency, status, reason, failure_reason,
	gateway_reference, attempt_after, created_at, updated_at`

// paymentColumns lists paymentRow's columns for RETURNING clauses.
const paymentColumns = `tenant_id, id, order_id, status, amount, currency, payment_method, failure_reason,
	decline_reason, gateway_reference, captured, refunded, version, created_at, updated_at`

// livePaymentIndex is the partial unique index that admits one processing,
// succeeded or declined payment per order.
const livePaymentIndex = "payments_order_live_key"

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func toModel(r paymentRow) Payment {
	return Payment{
		ID:               r.ID,
		TenantID:         r.TenantID,
		OrderID:          r.OrderID,
		Status:           Status(r.Status),
		Amount:           r.Amount,
		Currency:         r.Currency,
		Method:           r.PaymentMethod,
		FailureReason:    FailureReason(r.FailureReason.String),
		DeclineReason:    r.DeclineReason.String,
		GatewayReference: r.GatewayReference.String,
		Captured:         r.Captured,
		Refunded:         r.Refunded,
		Version:          r.Version,
		CreatedAt:        r.CreatedAt.UTC(),
		UpdatedAt:        r.UpdatedAt.UTC(),
	}
}

func fromModel(p Payment) paymentRow {
	return paymentRow{
		TenantID:         p.TenantID,
		ID:               p.ID,
		OrderID:          p.OrderID,
		Status:           string(p.Status),
		Amount:           p.Amount,
		Currency:         p.Currency,
		PaymentMethod:    p.Method,
		FailureReason:    nullString(string(p.FailureReason)),
		DeclineReason:    nullString(p.DeclineReason),
		GatewayReference: nullString(p.GatewayReference),
		Captured:         p.Captured,
		Refunded:         p.Refunded,
		Version:          p.Version,
		CreatedAt:        p.CreatedAt,
		UpdatedAt:        p.UpdatedAt,
	}
}

func refundToModel(r refundRow) Refund {
	return Refund{
		ID:               r.ID,
		TenantID:         r.TenantID,
		PaymentID:        r.PaymentID,
		Amount:           r.Amount,
		Currency:         r.Currency,
		Status:           RefundStatus(r.Status),
		Reason:           RefundReason(r.Reason),
		FailureReason:    r.FailureReason.String,
		GatewayReference: r.GatewayReference.String,
		CreatedAt:        r.CreatedAt.UTC(),
		UpdatedAt:        r.UpdatedAt.UTC(),
	}
}

// insertPayment adds r as processing; the database sets the version and
// timestamps. An order that already has a live payment gives
// ErrOrderHasPayment.
func insertPayment(tx *gorm.DB, r paymentRow) (paymentRow, error) {
	var out []paymentRow
	err := tx.Raw(`INSERT INTO payments (tenant_id, id, order_id, status, amount, currency, payment_method)
		VALUES (?, ?, ?, 'processing', ?, ?, ?)
		RETURNING `+paymentColumns,
		r.TenantID, r.ID, r.OrderID, r.Amount, r.Currency, r.PaymentMethod).Scan(&out).Error
	switch {
	case db.IsUniqueViolation(err, livePaymentIndex):
		return paymentRow{}, ErrOrderHasPayment
	case err != nil:
		return paymentRow{}, err
	case len(out) != 1:
		return paymentRow{}, fmt.Errorf("insert returned %d rows, want 1", len(out))
	}
	return out[0], nil
}

// settlePayment writes the outcome in r to a payment that is still
// processing and bumps its version. It reports false, with the row as it
// stands, when the payment was settled already.
func settlePayment(tx *gorm.DB, r paymentRow) (paymentRow, bool, error) {
	var out []paymentRow
	err := tx.Raw(`UPDATE payments
		SET status = ?, failure_reason = ?, decline_reason = ?, gateway_reference = ?, captured = ?,
		    version = version + 1, updated_at = now()
		WHERE tenant_id = ? AND id = ? AND status = 'processing'
		RETURNING `+paymentColumns,
		r.Status, r.FailureReason, r.DeclineReason, r.GatewayReference, r.Captured,
		r.TenantID, r.ID).Scan(&out).Error
	switch {
	case err != nil:
		return paymentRow{}, false, err
	case len(out) == 1:
		return out[0], true, nil
	}
	current, err := findPayment(tx, r.TenantID, r.ID, false)
	return current, false, err
}

// findPayment reads one payment; with forUpdate it also locks the row until
// the transaction ends.
func findPayment(tx *gorm.DB, tenantID, id uuid.UUID, forUpdate bool) (paymentRow, error) {
	return db.TenantRow[paymentRow](tx, tenantID, id, forUpdate, ErrNotFound)
}

// listPayments returns up to q.Limit+1 payments after q.After, by id.
func listPayments(tx *gorm.DB, tenantID uuid.UUID, q ListQuery) ([]paymentRow, error) {
	stmt := tx.Where("tenant_id = ?", tenantID)
	if q.OrderID != uuid.Nil {
		stmt = stmt.Where("order_id = ?", q.OrderID)
	}
	var rows []paymentRow
	err := page.ByID(stmt, q.After, q.Limit).Find(&rows).Error
	return rows, err
}

// lockProcessing locks a payment that is still processing. It reports
// false when the payment is settled, or locked by another transaction
// (SKIP LOCKED: a reconciler on another replica, or the payment's own
// request, is settling it right now).
func lockProcessing(tx *gorm.DB, tenantID, id uuid.UUID) (bool, error) {
	var ids []uuid.UUID
	err := tx.Raw(`SELECT id FROM payments
		WHERE tenant_id = ? AND id = ? AND status = 'processing'
		FOR UPDATE SKIP LOCKED`, tenantID, id).Scan(&ids).Error
	return len(ids) == 1, err
}

// succeededRefunds is the total of a payment's succeeded refunds.
func succeededRefunds(tx *gorm.DB, tenantID, paymentID uuid.UUID) (int64, error) {
	var total int64
	err := tx.Raw(`SELECT coalesce(sum(amount), 0)::bigint FROM refunds
		WHERE tenant_id = ? AND payment_id = ? AND status = 'succeeded'`,
		tenantID, paymentID).Scan(&total).Error
	return total, err
}

// insertRefund adds r as pending, due to the reconciler after sendAfter,
// and raises its payment's refunded total by r.Amount. The payments
// table's CHECK (refunded <= captured) backs up the caller's check. It
// reports false, and changes nothing, for a second order_cancelled refund
// of one payment.
func insertRefund(tx *gorm.DB, r refundRow, sendAfter time.Duration) (refundRow, bool, error) {
	var out []refundRow
	err := tx.Raw(`INSERT INTO refunds (tenant_id, id, payment_id, amount, currency, status, reason, attempt_after)
		VALUES (?, ?, ?, ?, ?, 'pending', ?, now() + make_interval(secs => ?))
		ON CONFLICT (tenant_id, payment_id) WHERE reason = 'order_cancelled' DO NOTHING
		RETURNING `+refundColumns,
		r.TenantID, r.ID, r.PaymentID, r.Amount, r.Currency, r.Reason, sendAfter.Seconds()).Scan(&out).Error
	switch {
	case err != nil:
		return refundRow{}, false, err
	case len(out) == 0:
		return refundRow{}, false, nil
	}
	if err := addRefunded(tx, r.TenantID, r.PaymentID, r.Amount); err != nil {
		return refundRow{}, false, err
	}
	return out[0], true, nil
}

// addRefunded changes a payment's refunded total by delta.
func addRefunded(tx *gorm.DB, tenantID, paymentID uuid.UUID, delta int64) error {
	res := tx.Exec(`UPDATE payments
		SET refunded = refunded + ?, version = version + 1, updated_at = now()
		WHERE tenant_id = ? AND id = ?`, delta, tenantID, paymentID)
	switch {
	case db.IsCheckViolation(res.Error):
		return ErrRefundTooLarge
	case res.Error != nil:
		return res.Error
	case res.RowsAffected != 1:
		return ErrNotFound
	}
	return nil
}

// claimRefund takes a pending refund that is due for the reconciler,
// pushing its next attempt lease into the future so that no other
// reconciler sends it meanwhile. It reports false when the refund is
// settled, not due, or being claimed by another transaction.
func claimRefund(tx *gorm.DB, tenantID, id uuid.UUID, lease time.Duration) (refundRow, bool, error) {
	var out []refundRow
	err := tx.Raw(`WITH due AS (
			SELECT tenant_id AS due_tenant, id AS due_id FROM refunds
			WHERE tenant_id = ? AND id = ? AND status = 'pending' AND attempt_after <= now()
			FOR UPDATE SKIP LOCKED)
		UPDATE refunds SET attempt_after = now() + make_interval(secs => ?)
		FROM due WHERE tenant_id = due_tenant AND id = due_id
		RETURNING `+refundColumns,
		tenantID, id, lease.Seconds()).Scan(&out).Error
	if err != nil || len(out) == 0 {
		return refundRow{}, false, err
	}
	return out[0], true, nil
}

// settleRefund writes the gateway's answer in r to a refund that is still
// pending; a failed refund gives its amount back to the payment. It
// reports false, with the refund as it stands, when the refund was settled
// already.
func settleRefund(tx *gorm.DB, r refundRow) (refundRow, bool, error) {
	var out []refundRow
	err := tx.Raw(`UPDATE refunds
		SET status = ?, failure_reason = ?, gateway_reference = ?, updated_at = now()
		WHERE tenant_id = ? AND id = ? AND status = 'pending'
		RETURNING `+refundColumns,
		r.Status, r.FailureReason, r.GatewayReference, r.TenantID, r.ID).Scan(&out).Error
	if err != nil {
		return refundRow{}, false, err
	}
	if len(out) == 0 {
		current, err := findRefund(tx, r.TenantID, r.ID)
		return current, false, err
	}
	if RefundStatus(out[0].Status) == RefundFailed {
		if err := addRefunded(tx, r.TenantID, r.PaymentID, -r.Amount); err != nil {
			return refundRow{}, false, err
		}
	}
	return out[0], true, nil
}

// findRefund reads one refund.
func findRefund(tx *gorm.DB, tenantID, id uuid.UUID) (refundRow, error) {
	return db.TenantRow[refundRow](tx, tenantID, id, false, ErrRefundNotFound)
}

// stale is a (tenant, id) pair from the reconciler's cross-tenant reads.
type stale struct {
	TenantID uuid.UUID `gorm:"column:tenant_id"`
	ID       uuid.UUID `gorm:"column:id"`
}

// unsettledPayments lists up to limit payments, of every tenant, that
// have been processing for longer than age by the database's clock
// (payments_unsettled, a SECURITY DEFINER function that returns these
// pairs and nothing else).
func unsettledPayments(tx *gorm.DB, age time.Duration, limit int) ([]stale, error) {
	var out []stale
	err := tx.Raw(`SELECT tenant_id, payment_id AS id FROM payments_unsettled(now() - make_interval(secs => ?), ?)`,
		age.Seconds(), limit).Scan(&out).Error
	return out, err
}

// dueRefunds lists up to limit pending refunds, of every tenant, that are
// due to be sent by the database's clock (refunds_due, like
// unsettledPayments).
func dueRefunds(tx *gorm.DB, limit int) ([]stale, error) {
	var out []stale
	err := tx.Raw(`SELECT tenant_id, refund_id AS id FROM refunds_due(now(), ?)`, limit).Scan(&out).Error
	return out, err
}
