package db_test

import (
	"errors"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestNoTenant proves WithTenant and SetTenant refuse the nil tenant
// instead of running unscoped.
func TestNoTenant(t *testing.T) {
	t.Parallel()
	app := testenv.Get(t).OpenDB(t, 1)
	ctx := t.Context()

	t.Run("WithTenant", func(t *testing.T) {
		called := false
		err := app.WithTenant(ctx, uuid.Nil, func(*gorm.DB) error { called = true; return nil })
		if !errors.Is(err, db.ErrNoTenant) {
			t.Errorf("got %v, want ErrNoTenant", err)
		}
		if called {
			t.Error("got fn called, want it not called")
		}
	})
	t.Run("SetTenant", func(t *testing.T) {
		err := app.Unscoped(ctx).Transaction(func(tx *gorm.DB) error { return db.SetTenant(tx, uuid.Nil) })
		if !errors.Is(err, db.ErrNoTenant) {
			t.Errorf("got %v, want ErrNoTenant", err)
		}
	})
}

// TestErrorClassifiers proves IsUniqueViolation, IsCheckViolation and
// IsForeignKeyViolation recognise the errors PostgreSQL really returns.
func TestErrorClassifiers(t *testing.T) {
	t.Parallel()
	_, a, _ := tenantProducts(t, "DUP-1")
	app := testenv.Get(t).OpenDB(t, 2)
	run := func(sql string, args ...any) error {
		return app.WithTenant(t.Context(), a, func(tx *gorm.DB) error { return tx.Exec(sql, args...).Error })
	}
	insert := `INSERT INTO products (tenant_id, id, sku, name, price, currency, stock_on_hand) VALUES (?, ?, ?, 'P', ?, 'EUR', 1)`

	dup := run(insert, a, uuid.New(), "DUP-1", 1)
	check := run(insert, a, uuid.New(), "NEG-1", -1)
	ghost := uuid.New() // no such tenant: row-level security admits it, the foreign key does not
	fk := app.WithTenant(t.Context(), ghost, func(tx *gorm.DB) error {
		return tx.Exec(insert, ghost, uuid.New(), "FK-1", 1).Error
	})
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"duplicate is unique violation", db.IsUniqueViolation(dup), true},
		{"duplicate on its constraint", db.IsUniqueViolation(dup, "products_tenant_sku_key"), true},
		{"duplicate on another constraint", db.IsUniqueViolation(dup, "products_pkey"), false},
		{"duplicate is not check violation", db.IsCheckViolation(dup), false},
		{"negative price is check violation", db.IsCheckViolation(check), true},
		{"negative price is not unique violation", db.IsUniqueViolation(check), false},
		{"unknown tenant is foreign key violation", db.IsForeignKeyViolation(fk), true},
		{"duplicate is not foreign key violation", db.IsForeignKeyViolation(dup), false},
		{"nil", db.IsUniqueViolation(nil) || db.IsCheckViolation(nil) || db.IsForeignKeyViolation(nil), false},
		{"plain error", db.IsUniqueViolation(errors.New("23505")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v, want %v (dup err %v, check err %v, fk err %v)", tt.got, tt.want, dup, check, fk)
			}
		})
	}
}
