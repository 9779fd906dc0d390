package inventory

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// ReservationStatus is where a reservation stands.
type ReservationStatus string

// Reservation statuses: held for a pending order, then committed (stock
// taken) or released (stock back to available).
const (
	Held      ReservationStatus = "held"
	Committed ReservationStatus = "committed"
	Released  ReservationStatus = "released"
)

// Reservation is stock held for an order.
type Reservation struct {
	ID        uuid.UUID
	OrderID   uuid.UUID
	ProductID uuid.UUID
	SKU       string
	Quantity  int64
	UnitPrice int64
	Currency  string
	Status    ReservationStatus
	ExpiresAt time.Time
}

// Line asks to reserve Quantity of ProductID.
type Line struct {
	ProductID uuid.UUID
	Quantity  int64
}

// ErrInsufficientStock means a product has too little available stock.
var ErrInsufficientStock = fault.New(fault.InsufficientStock, "not enough stock available for the order")

// reservationRow is the reservations row.
type reservationRow struct {
	TenantID  uuid.UUID
	ID        uuid.UUID
	OrderID   uuid.UUID
	ProductID uuid.UUID
	Quantity  int64
	Status    string
	ExpiresAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

func (reservationRow) TableName() string { return "reservations" }

// Reserve holds stock for an order inside tx, a transaction scoped to
// tenantID. Each line is guarded by the UPDATE itself (available stock must
// cover it), so stock is never over-reserved under any concurrency; lines
// are taken in product order so concurrent orders cannot deadlock. A line
// that cannot be covered fails the whole call: the caller's transaction
// rolls back and nothing is held.
func (s *Service) Reserve(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID, lines []Line, expiresAt time.Time) ([]Reservation, error) {
	lines = slices.Clone(lines)
	slices.SortFunc(lines, func(a, b Line) int { return slices.Compare(a.ProductID[:], b.ProductID[:]) })
	out := make([]Reservation, 0, len(lines))
	for _, l := range lines {
		var p productRow
		res := tx.WithContext(ctx).Raw(`UPDATE products SET stock_reserved = stock_reserved + ?, version = version + 1, updated_at = now()
			WHERE tenant_id = ? AND id = ? AND stock_on_hand - stock_reserved >= ?
			RETURNING `+productColumns, l.Quantity, tenantID, l.ProductID, l.Quantity).Scan(&p)
		if res.Error != nil {
			return nil, fmt.Errorf("reserve %s: %w", l.ProductID, res.Error)
		}
		if res.RowsAffected == 0 {
			if _, err := findProduct(tx, tenantID, l.ProductID, false); err != nil {
				return nil, err
			}
			return nil, ErrInsufficientStock
		}
		r := reservationRow{TenantID: tenantID, ID: newID(), OrderID: orderID, ProductID: l.ProductID,
			Quantity: l.Quantity, Status: string(Held), ExpiresAt: expiresAt}
		if err := tx.WithContext(ctx).Omit("CreatedAt", "UpdatedAt").Create(&r).Error; err != nil {
			return nil, fmt.Errorf("insert reservation: %w", err)
		}
		out = append(out, Reservation{ID: r.ID, OrderID: orderID, ProductID: l.ProductID, SKU: p.SKU, Quantity: l.Quantity,
			UnitPrice: p.Price, Currency: p.Currency, Status: Held, ExpiresAt: expiresAt})
	}
	return out, nil
}

// Commit takes the held stock of an order: on hand and reserved both drop.
// Reservations already committed or released are left alone, so the call
// is idempotent.
func (s *Service) Commit(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) error {
	return s.settle(ctx, tx, tenantID, orderID, Committed, "stock_on_hand = stock_on_hand - r.quantity, stock_reserved = stock_reserved - r.quantity")
}

// Release returns the held stock of an order to available. Idempotent.
func (s *Service) Release(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID) error {
	return s.settle(ctx, tx, tenantID, orderID, Released, "stock_reserved = stock_reserved - r.quantity")
}

func (s *Service) settle(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID, to ReservationStatus, stock string) error {
	// One statement: move the held reservations and the products' counters
	// together.
	err := tx.WithContext(ctx).Exec(`WITH r AS (
			UPDATE reservations SET status = ?, updated_at = now()
			WHERE tenant_id = ? AND order_id = ? AND status = 'held'
			RETURNING product_id, quantity)
		UPDATE products p SET `+stock+`, version = p.version + 1, updated_at = now()
		FROM (SELECT product_id, sum(quantity) AS quantity FROM r GROUP BY product_id) r
		WHERE p.tenant_id = ? AND p.id = r.product_id`, string(to), tenantID, orderID, tenantID).Error
	if err != nil {
		return fmt.Errorf("%s reservations of order %s: %w", to, orderID, err)
	}
	return nil
}

// Reservations lists a product's reservations in the order they were made.
func (s *Service) Reservations(ctx context.Context, tenantID, productID uuid.UUID, after uuid.UUID, limit int) (out []Reservation, err error) {
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		if _, err := findProduct(tx, tenantID, productID, false); err != nil {
			return err
		}
		var rows []reservationRow
		q := tx.Where("tenant_id = ? AND product_id = ?", tenantID, productID).Order("id").Limit(limit + 1)
		if after != uuid.Nil {
			q = q.Where("id > ?", after)
		}
		if err := q.Find(&rows).Error; err != nil {
			return fmt.Errorf("list reservations: %w", err)
		}
		for _, r := range rows {
			out = append(out, Reservation{ID: r.ID, OrderID: r.OrderID, ProductID: r.ProductID, Quantity: r.Quantity,
				Status: ReservationStatus(r.Status), ExpiresAt: r.ExpiresAt.UTC()})
		}
		return nil
	})
	return out, err
}

func newID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.New()
	}
	return id
}

// reservationJSON is a reservation as the API shows it.
type reservationJSON struct {
	ID        uuid.UUID         `json:"id"`
	OrderID   uuid.UUID         `json:"order_id"`
	Quantity  int64             `json:"quantity"`
	Status    ReservationStatus `json:"status"`
	ExpiresAt time.Time         `json:"expires_at"`
}

func (h *Handler) reservations(c *gin.Context) {
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		httpx.Error(c, err)
		return
	}
	page, err := httpx.ParsePage(c)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	rs, err := h.svc.Reservations(c.Request.Context(), tenantID, id, page.After, page.Limit)
	if err != nil {
		httpx.Error(c, err)
		return
	}
	out := make([]reservationJSON, len(rs))
	for i, r := range rs {
		out[i] = reservationJSON{ID: r.ID, OrderID: r.OrderID, Quantity: r.Quantity, Status: r.Status, ExpiresAt: r.ExpiresAt}
	}
	c.JSON(http.StatusOK, httpx.NewList(out, page.Limit, func(r reservationJSON) uuid.UUID { return r.ID }))
}
