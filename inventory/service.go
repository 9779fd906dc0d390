package inventory

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
)

// Service runs the catalogue and stock use cases. Every method works inside
// one db.WithTenant transaction, so it sees only tenantID's products.
type Service struct {
	db *db.DB
}

// NewService returns a Service on d.
func NewService(d *db.DB) *Service {
	return &Service{db: d}
}

// Create validates n and adds it to tenantID's catalogue with a new v7 id.
// A SKU the tenant already uses gives ErrSKUTaken.
func (s *Service) Create(ctx context.Context, tenantID uuid.UUID, n NewProduct) (Product, error) {
	if err := n.Validate(); err != nil {
		return Product{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Product{}, fmt.Errorf("create product: new id: %w", err)
	}
	row := fromModel(Product{
		ID:       id,
		TenantID: tenantID,
		SKU:      n.SKU,
		Name:     n.Name,
		Price:    n.Price,
		Currency: n.Currency,
		Stock:    n.Stock,
	})
	var created productRow
	err = s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
		created, err = insertProduct(tx, row) // row stays intact for a retry
		return err
	})
	if err != nil {
		return Product{}, fmt.Errorf("create product %q: %w", n.SKU, err)
	}
	return toModel(created), nil
}

// Get returns one of tenantID's products, or ErrNotFound.
func (s *Service) Get(ctx context.Context, tenantID, id uuid.UUID) (Product, error) {
	row, err := db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) (productRow, error) {
		return findProduct(tx, tenantID, id, false)
	})
	if err != nil {
		return Product{}, fmt.Errorf("get product %s: %w", id, err)
	}
	return toModel(row), nil
}

// List returns tenantID's products ordered by id, after q.After. It returns
// up to q.Limit+1 products: an extra one means another page follows, and
// httpx.NewList turns it into the next cursor.
func (s *Service) List(ctx context.Context, tenantID uuid.UUID, q ListQuery) ([]Product, error) {
	if q.Limit < 1 || q.Limit > MaxListLimit {
		q.Limit = DefaultListLimit
	}
	rows, err := db.Read(ctx, s.db, tenantID, func(tx *gorm.DB) ([]productRow, error) {
		return listProducts(tx, tenantID, q)
	})
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	out := make([]Product, len(rows))
	for i, r := range rows {
		out[i] = toModel(r)
	}
	return out, nil
}

// Update applies ch to one of tenantID's products and bumps its version.
// With ch.IfVersion set, a product at another version gives
// ErrVersionMismatch and is left unchanged.
func (s *Service) Update(ctx context.Context, tenantID, id uuid.UUID, ch ProductChange) (Product, error) {
	if err := ch.Validate(); err != nil {
		return Product{}, err
	}
	var row productRow
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		current, err := findProduct(tx, tenantID, id, true)
		if err != nil {
			return err
		}
		if ch.IfVersion != nil && *ch.IfVersion != current.Version {
			return ErrVersionMismatch
		}
		changed := fromModel(ch.apply(toModel(current)))
		row, err = updateProduct(tx, changed, current.Version)
		return err
	})
	if err != nil {
		return Product{}, fmt.Errorf("update product %s: %w", id, err)
	}
	return toModel(row), nil
}

// Delete removes one of tenantID's products. A product with reserved stock
// gives ErrReserved: pending orders still hold it.
func (s *Service) Delete(ctx context.Context, tenantID, id uuid.UUID) error {
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		return deleteProduct(tx, tenantID, id)
	})
	if err != nil {
		return fmt.Errorf("delete product %s: %w", id, err)
	}
	return nil
}

// AdjustStock adds a.Delta to a product's stock on hand atomically. An
// adjustment that would leave less on hand than is reserved gives
// ErrBelowReserved and changes nothing.
func (s *Service) AdjustStock(ctx context.Context, tenantID, id uuid.UUID, a StockAdjustment) (Product, error) {
	if err := a.Validate(); err != nil {
		return Product{}, err
	}
	var row productRow
	err := s.db.WithTenant(ctx, tenantID, func(tx *gorm.DB) (err error) {
		row, err = adjustStock(tx, tenantID, id, a.Delta)
		return err
	})
	if err != nil {
		return Product{}, fmt.Errorf("adjust stock of product %s by %d: %w", id, a.Delta, err)
	}
	return toModel(row), nil
}
