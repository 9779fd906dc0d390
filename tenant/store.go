package tenant

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

var lockForUpdate = clause.Locking{Strength: "UPDATE"}

// oidcRegistrationKey is the unique index (migration 0013) that keeps one
// (issuer, audience) to one tenant.
const oidcRegistrationKey = "tenants_oidc_issuer_audience_key"

// tenantRow is the tenants row.
type tenantRow struct {
	ID        uuid.UUID
	Slug      string
	Name      string
	Plan      string
	Status    string
	Settings  []byte `gorm:"type:jsonb"`
	Version   int
	CreatedAt time.Time
	UpdatedAt time.Time
	// BillingCustomerID is NULL when unset (migration 0021).
	BillingCustomerID *string
}

func (tenantRow) TableName() string { return "tenants" }

func (r tenantRow) toModel() (Tenant, error) {
	t := Tenant{
		ID: r.ID, Slug: r.Slug, Name: r.Name, Plan: r.Plan, Status: Status(r.Status),
		Version: r.Version, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
		BillingCustomerID: r.BillingCustomerID,
	}
	if len(r.Settings) > 0 {
		if err := json.Unmarshal(r.Settings, &t.Settings); err != nil {
			return Tenant{}, fmt.Errorf("decode settings of tenant %s: %w", r.ID, err)
		}
	}
	return t, nil
}

func fromModel(t Tenant) (tenantRow, error) {
	settings, err := json.Marshal(t.Settings)
	if err != nil {
		return tenantRow{}, fmt.Errorf("encode settings: %w", err)
	}
	return tenantRow{
		ID: t.ID, Slug: t.Slug, Name: t.Name, Plan: t.Plan, Status: string(t.Status),
		Settings: settings, Version: t.Version, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
		BillingCustomerID: t.BillingCustomerID,
	}, nil
}

func insertTenant(tx *gorm.DB, t Tenant) error {
	r, err := fromModel(t)
	if err != nil {
		return err
	}
	if err := tx.Create(&r).Error; err != nil {
		switch {
		case db.IsUniqueViolation(err, "tenants_slug_key"):
			return ErrSlugTaken
		case db.IsForeignKeyViolation(err):
			return ErrNoSuchPlan
		}
		return fmt.Errorf("insert tenant: %w", err)
	}
	return nil
}

func getTenant(tx *gorm.DB, id uuid.UUID) (Tenant, error) {
	r, err := db.Take[tenantRow](tx.Where("id = ?", id), false, ErrNotFound)
	if err != nil {
		return Tenant{}, err
	}
	return r.toModel()
}

func listTenants(tx *gorm.DB, after uuid.UUID, limit int) ([]Tenant, error) {
	out, err := page.Find(tx, after, limit, tenantRow.toModel)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return out, nil
}

// updateTenant writes t if its stored version is still version, bumping it.
func updateTenant(tx *gorm.DB, t Tenant, version int) (Tenant, error) {
	r, err := fromModel(t)
	if err != nil {
		return Tenant{}, err
	}
	res := tx.Model(&tenantRow{}).Where("id = ? AND version = ?", t.ID, version).Updates(map[string]any{
		"name": r.Name, "plan": r.Plan, "status": r.Status, "settings": r.Settings, "billing_customer_id": r.BillingCustomerID,
		"version": gorm.Expr("version + 1"), "updated_at": gorm.Expr("now()"),
	})
	if res.Error != nil {
		switch {
		case db.IsForeignKeyViolation(res.Error):
			return Tenant{}, ErrNoSuchPlan
		case db.IsUniqueViolation(res.Error, oidcRegistrationKey):
			return Tenant{}, ErrIssuerTaken
		}
		return Tenant{}, fmt.Errorf("update tenant: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return Tenant{}, ErrVersionMismatch
	}
	return getTenant(tx, t.ID)
}

// listPlans reads the plans in their sort order, straight into Plan (its
// fields are the plans columns).
func listPlans(tx *gorm.DB) ([]Plan, error) {
	var out []Plan
	if err := tx.Table("plans").Order("sort_order").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("list plans: %w", err)
	}
	return out, nil
}
