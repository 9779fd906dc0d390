package orders

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/page"
)

// viewRow is the order_views row: the read model of one order.
type viewRow struct {
	TenantID             uuid.UUID
	ID                   uuid.UUID
	CustomerID           string
	Status               string
	Items                []byte `gorm:"type:jsonb"`
	Total                int64
	Currency             string
	CancellationReason   *string
	PaymentID            *uuid.UUID
	ReservationExpiresAt time.Time
	Version              int64
	CreatedAt            time.Time
	UpdatedAt            time.Time
}

func (viewRow) TableName() string { return "order_views" }

func fromOrder(o Order) (viewRow, error) {
	items, err := json.Marshal(o.Items)
	if err != nil {
		return viewRow{}, fmt.Errorf("encode items: %w", err)
	}
	r := viewRow{TenantID: o.TenantID, ID: o.ID, CustomerID: o.CustomerID, Status: string(o.Status), Items: items,
		Total: o.Total, Currency: o.Currency, PaymentID: o.PaymentID, ReservationExpiresAt: o.ReservationExpiresAt,
		Version: o.Version, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
	if o.CancellationReason != "" {
		r.CancellationReason = &o.CancellationReason
	}
	return r, nil
}

func (r viewRow) toOrder() (Order, error) {
	o := Order{TenantID: r.TenantID, ID: r.ID, CustomerID: r.CustomerID, Status: Status(r.Status), Total: r.Total,
		Currency: r.Currency, PaymentID: r.PaymentID, ReservationExpiresAt: r.ReservationExpiresAt.UTC(),
		Version: r.Version, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	if r.CancellationReason != nil {
		o.CancellationReason = *r.CancellationReason
	}
	if err := json.Unmarshal(r.Items, &o.Items); err != nil {
		return Order{}, fmt.Errorf("decode items of order %s: %w", r.ID, err)
	}
	return o, nil
}

// project writes the order's current state to the read model.
func project(tx *gorm.DB, o Order) error {
	r, err := fromOrder(o)
	if err != nil {
		return err
	}
	err = tx.Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "tenant_id"}, {Name: "id"}},
		DoUpdates: clause.AssignmentColumns([]string{"status", "cancellation_reason", "payment_id", "version", "updated_at"}),
	}).Create(&r).Error
	if err != nil {
		return fmt.Errorf("project order %s: %w", o.ID, err)
	}
	return nil
}

// ofTenant scopes tx's next query to tenantID's rows by name, not only by
// row-level security, so that Citus routes it to the tenant's shard.
func ofTenant(tx *gorm.DB, tenantID uuid.UUID) *gorm.DB { return tx.Where("tenant_id = ?", tenantID) }

// getView reads one order through q (ofTenant, where the tenant is known).
func getView(q *gorm.DB, id uuid.UUID, forUpdate bool) (Order, error) {
	r, err := db.Take[viewRow](q.Where("id = ?", id), forUpdate, ErrNotFound)
	if err != nil {
		return Order{}, err
	}
	return r.toOrder()
}

func listViews(tx *gorm.DB, tenantID uuid.UUID, status Status, after uuid.UUID, limit int) ([]Order, error) {
	q := ofTenant(tx, tenantID)
	if status != "" {
		q = q.Where("status = ?", string(status))
	}
	out, err := page.Find(q, after, limit, viewRow.toOrder)
	if err != nil {
		return nil, fmt.Errorf("list orders: %w", err)
	}
	return out, nil
}

// expiredOrder is a row of orders_expired.
type expiredOrder struct {
	TenantID uuid.UUID
	OrderID  uuid.UUID
}

func listExpired(tx *gorm.DB, now time.Time, limit int) ([]expiredOrder, error) {
	var rows []expiredOrder
	if err := tx.Raw(`SELECT * FROM orders_expired(?, ?)`, now, limit).Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("list expired orders: %w", err)
	}
	return rows, nil
}
