package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/page"
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

func (r reservationRow) toModel() (Reservation, error) {
	return Reservation{ID: r.ID, OrderID: r.OrderID, ProductID: r.ProductID, Quantity: r.Quantity,
		Status: ReservationStatus(r.Status), ExpiresAt: r.ExpiresAt.UTC()}, nil
}

// Reserve holds stock for an order inside tx, a transaction scoped to
// tenantID, in two statements (two round trips, however many lines), each
// naming tenant_id, so that Citus routes both to the tenant's shard: one
// locks the products and takes the stock, then a multi-row INSERT …
// VALUES records the reservations (Citus cannot route an INSERT inside a
// CTE, nor push down an INSERT … SELECT on a table under row-level
// security: docs/citus/README.md section 3). Each line is guarded by the
// UPDATE itself (available stock must cover it), so stock is never
// over-reserved under any concurrency; the products are locked in id order
// first (docs/concurrency.md), so concurrent orders and the saga cannot
// deadlock. A line that cannot be covered fails the whole call before any
// reservation is recorded: the caller's transaction rolls back and nothing
// is held. Lines must name distinct products (orders merge repeated ones).
func (s *Service) Reserve(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID, lines []Line, expiresAt time.Time) ([]Reservation, error) {
	if len(lines) == 0 {
		return nil, nil
	}
	lines = slices.Clone(lines)
	slices.SortFunc(lines, func(a, b Line) int { return slices.Compare(a.ProductID[:], b.ProductID[:]) })
	tx = tx.WithContext(ctx)
	held, err := holdStock(tx, tenantID, lines)
	if err != nil {
		return nil, fmt.Errorf("reserve %d lines: %w", len(lines), err)
	}
	out := make([]Reservation, len(lines))
	for i, h := range held {
		out[i] = Reservation{ID: newID(), OrderID: orderID, ProductID: h.ProductID, SKU: h.SKU,
			Quantity: lines[i].Quantity, UnitPrice: h.Price, Currency: h.Currency, Status: Held, ExpiresAt: expiresAt}
	}
	if err := insertReservations(tx, tenantID, out); err != nil {
		return nil, fmt.Errorf("reserve %d lines: %w", len(lines), err)
	}
	return out, nil
}

// heldLine is a line whose stock holdStock took.
type heldLine struct {
	ProductID uuid.UUID
	SKU       string
	Price     int64
	Currency  string
}

// holdStock locks the lines' products in id order and adds each line's
// quantity to its product's reserved stock where the available stock
// covers it, in one statement, and returns the lines in order (lines are
// sorted by product id). ErrNotFound names a product the tenant does not
// have, ErrInsufficientStock a line not covered; either way tx must roll
// back.
func holdStock(tx *gorm.DB, tenantID uuid.UUID, lines []Line) ([]heldLine, error) {
	var (
		values strings.Builder
		args   = make([]any, 0, 2*len(lines)+2)
	)
	for i, l := range lines {
		if i > 0 {
			values.WriteString(", ")
		}
		values.WriteString("(?::uuid, ?::bigint)")
		args = append(args, l.ProductID, l.Quantity)
	}
	args = append(args, tenantID, tenantID)
	var rows []struct {
		ProductID   uuid.UUID
		Found, Held bool
		SKU         *string
		Price       *int64
		Currency    *string
	}
	err := tx.Raw(`WITH want (product_id, quantity) AS (VALUES `+values.String()+`),
		locked AS MATERIALIZED (
			SELECT p.id FROM products p
			WHERE p.tenant_id = ? AND p.id IN (SELECT product_id FROM want)
			ORDER BY p.id FOR UPDATE),
		held AS (
			UPDATE products p SET stock_reserved = p.stock_reserved + w.quantity, version = p.version + 1, updated_at = now()
			FROM want w, locked l
			WHERE p.tenant_id = ? AND p.id = l.id AND w.product_id = l.id AND p.stock_on_hand - p.stock_reserved >= w.quantity
			RETURNING p.id, p.sku, p.price, p.currency)
		SELECT w.product_id, l.id IS NOT NULL AS found, h.id IS NOT NULL AS held, h.sku, h.price, h.currency
		FROM want w LEFT JOIN locked l ON l.id = w.product_id LEFT JOIN held h ON h.id = w.product_id
		ORDER BY w.product_id`, args...).Scan(&rows).Error
	if err != nil {
		return nil, err
	}
	if len(rows) != len(lines) {
		return nil, fmt.Errorf("got %d lines back, want %d", len(rows), len(lines))
	}
	out := make([]heldLine, len(rows))
	for i, r := range rows {
		switch {
		case !r.Found:
			return nil, fmt.Errorf("%s: %w", r.ProductID, ErrNotFound)
		case !r.Held:
			return nil, ErrInsufficientStock
		}
		out[i] = heldLine{ProductID: r.ProductID, SKU: *r.SKU, Price: *r.Price, Currency: *r.Currency}
	}
	return out, nil
}

// insertReservations records rs, held, in one multi-row INSERT … VALUES.
func insertReservations(tx *gorm.DB, tenantID uuid.UUID, rs []Reservation) error {
	var (
		values strings.Builder
		args   = make([]any, 0, 6*len(rs))
	)
	for i, r := range rs {
		if i > 0 {
			values.WriteString(", ")
		}
		values.WriteString("(?::uuid, ?::uuid, ?::uuid, ?::uuid, ?::bigint, 'held', ?::timestamptz)")
		args = append(args, tenantID, r.ID, r.OrderID, r.ProductID, r.Quantity, r.ExpiresAt)
	}
	res := tx.Exec(`INSERT INTO reservations (tenant_id, id, order_id, product_id, quantity, status, expires_at)
		VALUES `+values.String(), args...)
	if res.Error != nil {
		return fmt.Errorf("insert reservations: %w", res.Error)
	}
	if res.RowsAffected != int64(len(rs)) {
		return fmt.Errorf("insert reservations: inserted %d, want %d", res.RowsAffected, len(rs))
	}
	return nil
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

// settle moves an order's held reservations to status `to` and applies
// stock to their products. The products are locked in id order first, as
// Reserve locks them (docs/concurrency.md): an UPDATE ... FROM locks rows in
// whatever order its plan reads them, which deadlocked against Reserve.
func (s *Service) settle(ctx context.Context, tx *gorm.DB, tenantID, orderID uuid.UUID, to ReservationStatus, stock string) error {
	tx = tx.WithContext(ctx)
	var locked []uuid.UUID
	if err := tx.Raw(`SELECT p.id FROM products p
		WHERE p.tenant_id = ? AND p.id IN (
			SELECT product_id FROM reservations WHERE tenant_id = ? AND order_id = ? AND status = 'held')
		ORDER BY p.id FOR UPDATE`, tenantID, tenantID, orderID).Scan(&locked).Error; err != nil {
		return fmt.Errorf("lock products of order %s: %w", orderID, err)
	}
	if len(locked) == 0 {
		return nil // nothing held: already settled
	}
	// One statement: move the held reservations and the products' counters
	// together.
	err := tx.Exec(`WITH r AS (
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
		rs, err := page.Find(tx.Where("tenant_id = ? AND product_id = ?", tenantID, productID), after, limit, reservationRow.toModel)
		if err != nil {
			return fmt.Errorf("list reservations: %w", err)
		}
		out = rs
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

func (h *Handler) reservations(c *gin.Context) error {
	tenantID, err := httpx.TenantID(c)
	if err != nil {
		return err
	}
	id, err := httpx.ParseID(c, "id")
	if err != nil {
		return err
	}
	page, err := httpx.ParsePage(c)
	if err != nil {
		return err
	}
	rs, err := h.svc.Reservations(c.Request.Context(), tenantID, id, page.After, page.Limit)
	if err != nil {
		return err
	}
	httpx.WriteList(c, page, rs, func(r Reservation) reservationJSON {
		return reservationJSON{ID: r.ID, OrderID: r.OrderID, Quantity: r.Quantity, Status: r.Status, ExpiresAt: r.ExpiresAt}
	}, func(r reservationJSON) uuid.UUID { return r.ID })
	return nil
}
