package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/inventory"
)

func TestCreateAndGet(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	before := time.Now().Add(-time.Minute)

	p, err := f.svc.Create(ctx, tenantID, inventory.NewProduct{
		SKU: "MUG-1", Name: "  Mug  ", Price: 1299, Currency: "EUR", Stock: 7,
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if p.ID.Version() != 7 {
		t.Errorf("got id version %d, want 7", p.ID.Version())
	}
	want := inventory.Product{
		ID: p.ID, TenantID: tenantID, SKU: "MUG-1", Name: "Mug", Price: 1299, Currency: "EUR",
		Stock: 7, Reserved: 0, Version: 1, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}
	if p.CreatedAt.Before(before) || p.CreatedAt.Location() != time.UTC {
		t.Errorf("got created_at %v, want a recent UTC time", p.CreatedAt)
	}

	got, err := f.svc.Get(ctx, tenantID, p.ID)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !got.CreatedAt.Equal(p.CreatedAt) || !got.UpdatedAt.Equal(p.UpdatedAt) {
		t.Errorf("got times %v %v, want %v %v", got.CreatedAt, got.UpdatedAt, p.CreatedAt, p.UpdatedAt)
	}
	got.CreatedAt, got.UpdatedAt = p.CreatedAt, p.UpdatedAt
	if got != p {
		t.Errorf("got %+v, want %+v", got, p)
	}

	_, err = f.svc.Get(ctx, tenantID, uuid.Must(uuid.NewV7()))
	if !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("get unknown: got %v, want %v", err, inventory.ErrNotFound)
	}
}

func TestCreateValidationNamesField(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	tenantID := testenv.NewTenant(t).ID
	_, err := f.svc.Create(context.Background(), tenantID, inventory.NewProduct{SKU: "ok", Name: "n", Currency: "EUR", Stock: -3})
	wantFields(t, err, []string{"stock"})
}

func TestListPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID, other := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	var want []uuid.UUID
	for i := range 7 {
		want = append(want, f.product(t, tenantID, fmt.Sprintf("P-%d", i), 1).ID)
	}
	f.product(t, other, "P-0", 1) // another tenant's product must never show
	slices.SortFunc(want, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })

	listed, sizes := apptest.Pages(t, 3, func(after uuid.UUID) ([]inventory.Product, error) {
		return f.svc.List(ctx, tenantID, inventory.ListQuery{Limit: 3, After: after})
	}, func(p inventory.Product) uuid.UUID { return p.ID })
	var got []uuid.UUID
	for _, p := range listed {
		if p.TenantID != tenantID {
			t.Fatalf("got a product of tenant %s, want only %s", p.TenantID, tenantID)
		}
		got = append(got, p.ID)
	}
	if !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Errorf("got page sizes %v, want [3 3 1]", sizes)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got ids %v, want %v", got, want)
	}

	bySKU, err := f.svc.List(ctx, tenantID, inventory.ListQuery{SKU: "P-4"})
	if err != nil {
		t.Fatalf("list by sku: %v", err)
	}
	if len(bySKU) != 1 || bySKU[0].SKU != "P-4" {
		t.Errorf("got %d products for sku P-4, want exactly P-4", len(bySKU))
	}
}

func TestSKUUniquePerTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	a, b := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	f.product(t, a, "DUP", 1)

	_, err := f.svc.Create(ctx, a, inventory.NewProduct{SKU: "DUP", Name: "again", Currency: "EUR"})
	if !errors.Is(err, inventory.ErrSKUTaken) || fault.CodeOf(err) != fault.Conflict {
		t.Errorf("same tenant: got %v, want %v (conflict)", err, inventory.ErrSKUTaken)
	}
	if _, err := f.svc.Create(ctx, b, inventory.NewProduct{SKU: "DUP", Name: "other tenant", Currency: "EUR"}); err != nil {
		t.Errorf("other tenant: got %v, want success", err)
	}

	second := f.product(t, a, "OTHER", 1)
	_, err = f.svc.Update(ctx, a, second.ID, inventory.ProductChange{SKU: ptr("DUP")})
	if !errors.Is(err, inventory.ErrSKUTaken) {
		t.Errorf("rename onto a taken sku: got %v, want %v", err, inventory.ErrSKUTaken)
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	a, b := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	theirs := f.product(t, b, "SECRET", 10)

	tests := []struct {
		name string
		do   func() error
	}{
		{"get", func() error { _, err := f.svc.Get(ctx, a, theirs.ID); return err }},
		{"update", func() error {
			_, err := f.svc.Update(ctx, a, theirs.ID, inventory.ProductChange{Name: ptr("pwned")})
			return err
		}},
		{"update with version", func() error {
			_, err := f.svc.Update(ctx, a, theirs.ID, inventory.ProductChange{Price: ptr(int64(0)), IfVersion: ptr(1)})
			return err
		}},
		{"delete", func() error { return f.svc.Delete(ctx, a, theirs.ID) }},
		{"adjust stock", func() error {
			_, err := f.svc.AdjustStock(ctx, a, theirs.ID, inventory.StockAdjustment{Delta: -10, Reason: "theft"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, inventory.ErrNotFound) {
				t.Errorf("got %v, want %v", err, inventory.ErrNotFound)
			}
		})
	}

	list, err := f.svc.List(ctx, a, inventory.ListQuery{})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list) != 0 {
		t.Errorf("got %d products listed for tenant A, want 0", len(list))
	}
	got, err := f.svc.Get(ctx, b, theirs.ID)
	if err != nil {
		t.Fatalf("owner get: %v", err)
	}
	if got.Name != theirs.Name || got.Stock != 10 || got.Version != 1 {
		t.Errorf("got %q stock %d version %d, want the product untouched (%q, 10, 1)", got.Name, got.Stock, got.Version, theirs.Name)
	}
}

func TestAdjustStock(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	tests := []struct {
		name            string
		stock, reserved int64
		delta           int64
		wantErr         error
		wantStock       int64
	}{
		{"delivery", 10, 0, 5, nil, 15},
		{"sale of free stock", 10, 4, -6, nil, 4},
		{"below reserved", 10, 4, -7, inventory.ErrBelowReserved, 10},
		{"below zero", 3, 0, -4, inventory.ErrBelowReserved, 3},
		{"everything", 3, 0, -3, nil, 0},
		{"most negative delta", 3, 0, math.MinInt64, inventory.ErrBelowReserved, 3},
		{"overflow", 1, 0, math.MaxInt64, inventory.ErrStockOverflow, 1},
		{"delivery with reservation", 2, 2, 1, nil, 3},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := f.productReserved(t, tenantID, fmt.Sprintf("ADJ-%d", i), tt.stock, tt.reserved)
			got, err := f.svc.AdjustStock(ctx, tenantID, p.ID, inventory.StockAdjustment{Delta: tt.delta, Reason: "count"})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err == nil && (got.Version != 2 || got.Stock != tt.wantStock || got.Reserved != tt.reserved) {
				t.Errorf("got stock %d reserved %d version %d, want %d %d 2", got.Stock, got.Reserved, got.Version, tt.wantStock, tt.reserved)
			}
			after, err := f.svc.Get(ctx, tenantID, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantVersion := 2
			if tt.wantErr != nil {
				wantVersion = 1
			}
			if after.Stock != tt.wantStock || after.Version != wantVersion {
				t.Errorf("stored: got stock %d version %d, want %d %d", after.Stock, after.Version, tt.wantStock, wantVersion)
			}
		})
	}

	t.Run("unknown product", func(t *testing.T) {
		_, err := f.svc.AdjustStock(ctx, tenantID, uuid.Must(uuid.NewV7()), inventory.StockAdjustment{Delta: 1, Reason: "x"})
		if !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("got %v, want %v", err, inventory.ErrNotFound)
		}
	})
	t.Run("invalid adjustment", func(t *testing.T) {
		p := f.product(t, tenantID, "ADJ-invalid", 1)
		_, err := f.svc.AdjustStock(ctx, tenantID, p.ID, inventory.StockAdjustment{Delta: 0, Reason: "x"})
		wantFields(t, err, []string{"delta"})
	})
}

func TestConcurrentStockAdjustments(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 8)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	tests := []struct {
		name            string
		stock, reserved int64
		workers         int
		wantOK          int
	}{
		{"no reservation", 20, 0, 50, 20},
		{"with reservation", 20, 5, 50, 15},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := f.productReserved(t, tenantID, fmt.Sprintf("RACE-%d", i), tt.stock, tt.reserved)
			errs := testenv.Race(tt.workers, func(int) error {
				got, err := f.svc.AdjustStock(ctx, tenantID, p.ID, inventory.StockAdjustment{Delta: -1, Reason: "sale"})
				if err == nil && got.Stock < got.Reserved {
					return fmt.Errorf("stock %d below reserved %d", got.Stock, got.Reserved)
				}
				return err
			})
			if ok := testenv.Succeeded(t, errs, inventory.ErrBelowReserved); ok != tt.wantOK {
				t.Errorf("got %d succeeded and %d refused, want %d and %d", ok, tt.workers-ok, tt.wantOK, tt.workers-tt.wantOK)
			}
			after, err := f.svc.Get(ctx, tenantID, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if after.Stock != tt.reserved || after.Version != 1+tt.wantOK {
				t.Errorf("got stock %d version %d, want %d %d", after.Stock, after.Version, tt.reserved, 1+tt.wantOK)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	p := f.product(t, tenantID, "UPD", 5)

	t.Run("partial change keeps the rest", func(t *testing.T) {
		got, err := f.svc.Update(ctx, tenantID, p.ID, inventory.ProductChange{Name: ptr("  Renamed "), IfVersion: ptr(1)})
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		if got.Name != "Renamed" || got.Version != 2 || got.SKU != "UPD" || got.Price != p.Price || got.Stock != 5 {
			t.Errorf("got %+v, want name Renamed, version 2, the rest unchanged", got)
		}
		if got.UpdatedAt.Before(p.UpdatedAt) {
			t.Errorf("got updated_at %v, want at or after %v", got.UpdatedAt, p.UpdatedAt)
		}
	})
	t.Run("stale version", func(t *testing.T) {
		_, err := f.svc.Update(ctx, tenantID, p.ID, inventory.ProductChange{Price: ptr(int64(1)), IfVersion: ptr(1)})
		if !errors.Is(err, inventory.ErrVersionMismatch) || fault.CodeOf(err) != fault.PreconditionFailed {
			t.Fatalf("got %v, want %v", err, inventory.ErrVersionMismatch)
		}
		got, err := f.svc.Get(ctx, tenantID, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Price != p.Price || got.Version != 2 {
			t.Errorf("got price %d version %d, want %d 2 (unchanged)", got.Price, got.Version, p.Price)
		}
	})
	t.Run("no version given", func(t *testing.T) {
		got, err := f.svc.Update(ctx, tenantID, p.ID, inventory.ProductChange{Price: ptr(int64(0)), Currency: ptr("USD"), SKU: ptr("UPD-2")})
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		if got.Price != 0 || got.Currency != "USD" || got.SKU != "UPD-2" || got.Version != 3 {
			t.Errorf("got %+v, want price 0, USD, UPD-2, version 3", got)
		}
	})
	t.Run("nothing to change", func(t *testing.T) {
		_, err := f.svc.Update(ctx, tenantID, p.ID, inventory.ProductChange{})
		wantFields(t, err, []string{"body"})
	})
	t.Run("unknown product", func(t *testing.T) {
		_, err := f.svc.Update(ctx, tenantID, uuid.Must(uuid.NewV7()), inventory.ProductChange{Name: ptr("x")})
		if !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("got %v, want %v", err, inventory.ErrNotFound)
		}
	})
}

func TestConcurrentUpdatesWithSameVersion(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 8)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID
	p := f.product(t, tenantID, "CAS", 1)
	const workers = 10
	errs := testenv.Race(workers, func(i int) error {
		_, err := f.svc.Update(ctx, tenantID, p.ID, inventory.ProductChange{Price: ptr(int64(i)), IfVersion: ptr(1)})
		return err
	})
	if ok := testenv.Succeeded(t, errs, inventory.ErrVersionMismatch); ok != 1 {
		t.Errorf("got %d succeeded and %d mismatched, want 1 and %d", ok, workers-ok, workers-1)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	ctx := context.Background()
	tenantID := testenv.NewTenant(t).ID

	t.Run("free product", func(t *testing.T) {
		p := f.product(t, tenantID, "DEL", 3)
		if err := f.svc.Delete(ctx, tenantID, p.ID); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := f.svc.Get(ctx, tenantID, p.ID); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("get after delete: got %v, want %v", err, inventory.ErrNotFound)
		}
		if err := f.svc.Delete(ctx, tenantID, p.ID); !errors.Is(err, inventory.ErrNotFound) {
			t.Errorf("delete again: got %v, want %v", err, inventory.ErrNotFound)
		}
	})
	t.Run("reserved product", func(t *testing.T) {
		p := f.product(t, tenantID, "DEL-RES", 3)
		f.reserve(t, tenantID, p.ID, 1)
		err := f.svc.Delete(ctx, tenantID, p.ID)
		if !errors.Is(err, inventory.ErrReserved) || fault.CodeOf(err) != fault.Conflict {
			t.Errorf("got %v, want %v", err, inventory.ErrReserved)
		}
		if _, err := f.svc.Get(ctx, tenantID, p.ID); err != nil {
			t.Errorf("get after refused delete: got %v, want the product", err)
		}
	})
}

func TestNoTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	if _, err := f.svc.Get(context.Background(), uuid.Nil, uuid.Must(uuid.NewV7())); err == nil {
		t.Errorf("got nil error for uuid.Nil tenant, want an error")
	}
}
