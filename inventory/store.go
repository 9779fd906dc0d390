package inventory

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/page"
)

// productRow is a row of the products table.
type productRow struct {
	TenantID      uuid.UUID `gorm:"column:tenant_id;primaryKey"`
	ID            uuid.UUID `gorm:"column:id;primaryKey"`
	SKU           string    `gorm:"column:sku"`
	Name          string    `gorm:"column:name"`
	Price         int64     `gorm:"column:price"`
	Currency      string    `gorm:"column:currency"`
	StockOnHand   int64     `gorm:"column:stock_on_hand"`
	StockReserved int64     `gorm:"column:stock_reserved"`
	Version       int       `gorm:"column:version"`
	CreatedAt     time.Time `gorm:"column:created_at"`
	UpdatedAt     time.Time `gorm:"column:updated_at"`
}

// TableName maps productRow to the products table.
func (productRow) TableName() string { return "products" }

// productColumns lists productRow's columns for RETURNING clauses.
const productColumns = "tenant_id, id, sku, name, price, currency, stock_on_hand, stock_reserved, version, created_at, updated_at"

// skuConstraint is the unique constraint on (tenant_id, sku).
const skuConstraint = "products_tenant_sku_key"

// PostgreSQL error codes the store turns into domain errors.
const (
	pgForeignKeyViolation = "23503"
	pgNumericOutOfRange   = "22003"
)

func toModel(r productRow) Product {
	return Product{
		ID:        r.ID,
		TenantID:  r.TenantID,
		SKU:       r.SKU,
		Name:      r.Name,
		Price:     r.Price,
		Currency:  r.Currency,
		Stock:     r.StockOnHand,
		Reserved:  r.StockReserved,
		Version:   r.Version,
		CreatedAt: r.CreatedAt.UTC(),
		UpdatedAt: r.UpdatedAt.UTC(),
	}
}

func fromModel(p Product) productRow {
	return productRow{
		TenantID:      p.TenantID,
		ID:            p.ID,
		SKU:           p.SKU,
		Name:          p.Name,
		Price:         p.Price,
		Currency:      p.Currency,
		StockOnHand:   p.Stock,
		StockReserved: p.Reserved,
		Version:       p.Version,
		CreatedAt:     p.CreatedAt,
		UpdatedAt:     p.UpdatedAt,
	}
}

// insertProduct adds r; the database sets the version and timestamps.
func insertProduct(tx *gorm.DB, r productRow) (productRow, error) {
	var out []productRow
	err := tx.Raw(`INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		RETURNING `+productColumns,
		r.TenantID, r.ID, r.SKU, r.Name, r.Price, r.Currency, r.StockOnHand).Scan(&out).Error
	switch {
	case db.IsUniqueViolation(err, skuConstraint):
		return productRow{}, ErrSKUTaken
	case err != nil:
		return productRow{}, err
	case len(out) != 1:
		return productRow{}, fmt.Errorf("insert returned %d rows, want 1", len(out))
	}
	return out[0], nil
}

// findProduct reads one product; with forUpdate it also locks the row until
// the transaction ends.
func findProduct(tx *gorm.DB, tenantID, id uuid.UUID, forUpdate bool) (productRow, error) {
	return db.TenantRow[productRow](tx, tenantID, id, forUpdate, ErrNotFound)
}

// listProducts returns up to q.Limit+1 products after q.After, by id.
func listProducts(tx *gorm.DB, tenantID uuid.UUID, q ListQuery) ([]productRow, error) {
	stmt := tx.Where("tenant_id = ?", tenantID)
	if q.SKU != "" {
		stmt = stmt.Where("sku = ?", q.SKU)
	}
	var rows []productRow
	err := page.ByID(stmt, q.After, q.Limit).Find(&rows).Error
	return rows, err
}

// updateProduct writes r's catalogue fields if the row is still at version,
// and bumps the version.
func updateProduct(tx *gorm.DB, r productRow, version int) (productRow, error) {
	var out []productRow
	err := tx.Raw(`UPDATE products
		SET sku = ?, name = ?, price = ?, currency = ?, version = version + 1, updated_at = now()
		WHERE tenant_id = ? AND id = ? AND version = ?
		RETURNING `+productColumns,
		r.SKU, r.Name, r.Price, r.Currency, r.TenantID, r.ID, version).Scan(&out).Error
	switch {
	case db.IsUniqueViolation(err, skuConstraint):
		return productRow{}, ErrSKUTaken
	case err != nil:
		return productRow{}, err
	case len(out) == 0:
		return productRow{}, ErrVersionMismatch
	}
	return out[0], nil
}

// deleteProduct removes a product that has no reserved stock.
func deleteProduct(tx *gorm.DB, tenantID, id uuid.UUID) error {
	res := tx.Where("tenant_id = ? AND id = ? AND stock_reserved = 0", tenantID, id).Delete(&productRow{})
	switch {
	case db.SQLState(res.Error) == pgForeignKeyViolation:
		return ErrInUse
	case res.Error != nil:
		return res.Error
	case res.RowsAffected == 1:
		return nil
	}
	if _, err := findProduct(tx, tenantID, id, false); err != nil {
		return err
	}
	return ErrReserved
}

// adjustStock adds delta to the stock on hand in one guarded statement, so
// concurrent adjustments and reservations can never take it below the
// reserved stock (nor, since reserved is never negative, below zero).
func adjustStock(tx *gorm.DB, tenantID, id uuid.UUID, delta int64) (productRow, error) {
	var out []productRow
	err := tx.Raw(`UPDATE products
		SET stock_on_hand = stock_on_hand + ?, version = version + 1, updated_at = now()
		WHERE tenant_id = ? AND id = ? AND stock_on_hand + ? >= stock_reserved
		RETURNING `+productColumns,
		delta, tenantID, id, delta).Scan(&out).Error
	switch {
	case db.SQLState(err) == pgNumericOutOfRange:
		return productRow{}, ErrStockOverflow
	case db.IsCheckViolation(err):
		return productRow{}, ErrBelowReserved
	case err != nil:
		return productRow{}, err
	case len(out) == 1:
		return out[0], nil
	}
	if _, err := findProduct(tx, tenantID, id, false); err != nil {
		return productRow{}, err
	}
	return productRow{}, ErrBelowReserved
}
