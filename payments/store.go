package payments

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/tenantd/tenantd/internal/db"
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
	TenantID  uuid.UUID `gorm:"column:tenant_id;primaryKey"`
	ID        uuid.UUID `gorm:"column:id;primaryKey"`
	PaymentID uuid.UUID `gorm:"column:payment_id"`
	Amount    int64     `gorm:"column:amount"`
	Currency  string    `gorm:"column:currency"`
	CreatedAt time.Time `gorm:"column:created_at"`
}

// TableName maps refundRow to the refunds table.
func (refundRow) TableName() string { return "refunds" }

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
		ID:        r.ID,
		TenantID:  r.TenantID,
		PaymentID: r.PaymentID,
		Amount:    r.Amount,
		Currency:  r.Currency,
		CreatedAt: r.CreatedAt.UTC(),
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
	q := tx.Where("tenant_id = ? AND id = ?", tenantID, id)
	if forUpdate {
		q = q.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
	}
	var r paymentRow
	err := q.Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return paymentRow{}, ErrNotFound
	}
	return r, err
}

// listPayments returns up to q.Limit+1 payments after q.After, by id.
func listPayments(tx *gorm.DB, tenantID uuid.UUID, q ListQuery) ([]paymentRow, error) {
	stmt := tx.Where("tenant_id = ?", tenantID)
	if q.After != uuid.Nil {
		stmt = stmt.Where("id > ?", q.After)
	}
	if q.OrderID != uuid.Nil {
		stmt = stmt.Where("order_id = ?", q.OrderID)
	}
	var rows []paymentRow
	err := stmt.Order("id").Limit(q.Limit + 1).Find(&rows).Error
	return rows, err
}

// sumRefunds is the total of a payment's refunds.
func sumRefunds(tx *gorm.DB, tenantID, paymentID uuid.UUID) (int64, error) {
	var total int64
	err := tx.Raw(`SELECT coalesce(sum(amount), 0)::bigint FROM refunds WHERE tenant_id = ? AND payment_id = ?`,
		tenantID, paymentID).Scan(&total).Error
	return total, err
}

// insertRefund adds r and raises its payment's refunded total by r.Amount.
// The payments table's CHECK (refunded <= captured) backs up the caller's
// check.
func insertRefund(tx *gorm.DB, r refundRow) (refundRow, paymentRow, error) {
	var out []refundRow
	err := tx.Raw(`INSERT INTO refunds (tenant_id, id, payment_id, amount, currency)
		VALUES (?, ?, ?, ?, ?)
		RETURNING tenant_id, id, payment_id, amount, currency, created_at`,
		r.TenantID, r.ID, r.PaymentID, r.Amount, r.Currency).Scan(&out).Error
	switch {
	case err != nil:
		return refundRow{}, paymentRow{}, err
	case len(out) != 1:
		return refundRow{}, paymentRow{}, fmt.Errorf("insert refund returned %d rows, want 1", len(out))
	}
	var payment []paymentRow
	err = tx.Raw(`UPDATE payments
		SET refunded = refunded + ?, version = version + 1, updated_at = now()
		WHERE tenant_id = ? AND id = ?
		RETURNING `+paymentColumns,
		r.Amount, r.TenantID, r.PaymentID).Scan(&payment).Error
	switch {
	case db.IsCheckViolation(err):
		return refundRow{}, paymentRow{}, ErrRefundTooLarge
	case err != nil:
		return refundRow{}, paymentRow{}, err
	case len(payment) != 1:
		return refundRow{}, paymentRow{}, ErrNotFound
	}
	return out[0], payment[0], nil
}
