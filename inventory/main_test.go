package inventory_test

import (
	"context"
	"slices"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/inventory"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is a runtime-role pool, the inventory service on it, and the
// owner pool for setting up what the runtime role may not.
type fixture struct {
	db    *db.DB
	owner *db.DB
	svc   *inventory.Service
}

func newFixture(t testing.TB, maxConns int) fixture {
	t.Helper()
	env := testenv.Get(t)
	d := env.OpenDB(t, maxConns)
	return fixture{db: d, owner: env.OpenOwnerDB(t), svc: inventory.NewService(d)}
}

// product creates a product with the given stock.
func (f fixture) product(t testing.TB, tenantID uuid.UUID, sku string, stock int64) inventory.Product {
	t.Helper()
	p, err := f.svc.Create(context.Background(), tenantID, inventory.NewProduct{
		SKU: sku, Name: "Product " + sku, Price: 1999, Currency: "EUR", Stock: stock,
	})
	if err != nil {
		t.Fatalf("create product %s: %v", sku, err)
	}
	return p
}

// productReserved creates a product with the given stock, of which
// reserved (when not 0) is reserved; it returns the product as created.
func (f fixture) productReserved(t *testing.T, tenantID uuid.UUID, sku string, stock, reserved int64) inventory.Product {
	t.Helper()
	p := f.product(t, tenantID, sku, stock)
	if reserved > 0 {
		f.reserve(t, tenantID, p.ID, reserved)
	}
	return p
}

// reserve sets a product's reserved stock directly, as a pending order would.
func (f fixture) reserve(t *testing.T, tenantID, productID uuid.UUID, reserved int64) {
	t.Helper()
	err := f.owner.WithTenant(context.Background(), tenantID, func(tx *gorm.DB) error {
		res := tx.Exec("UPDATE products SET stock_reserved = ? WHERE id = ?", reserved, productID)
		if res.Error == nil && res.RowsAffected != 1 {
			t.Errorf("reserve: updated %d rows, want 1", res.RowsAffected)
		}
		return res.Error
	})
	if err != nil {
		t.Fatalf("reserve: %v", err)
	}
}

// wantFields fails t unless err is a validation error blaming exactly the
// fields want (sorted) or, with want nil, no fault at all.
func wantFields(t *testing.T, err error, want []string) {
	t.Helper()
	code, fields := testenv.FaultFields(err)
	if want == nil {
		if code != fault.Internal || fields != nil {
			t.Fatalf("got %s %v, want valid", code, fields)
		}
		return
	}
	if code != fault.Validation || !slices.Equal(fields, want) {
		t.Errorf("got %s %v, want %s %v", code, fields, fault.Validation, want)
	}
}
