package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/page"
)

// keyRow is the api_keys row.
type keyRow struct {
	TenantID   uuid.UUID
	ID         uuid.UUID
	Name       string
	Prefix     string
	SecretHash []byte
	Roles      db.TextArray
	CreatedBy  string
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	CreatedAt  time.Time
}

func (keyRow) TableName() string { return "api_keys" }

func (r keyRow) toModel() Key {
	return Key{
		ID: r.ID, TenantID: r.TenantID, Name: r.Name, Prefix: r.Prefix,
		Roles: []string(r.Roles), CreatedBy: r.CreatedBy,
		ExpiresAt: utc(r.ExpiresAt), RevokedAt: utc(r.RevokedAt), CreatedAt: r.CreatedAt.UTC(),
	}
}

// oneRow checks the result of a statement on one row: its error wrapped
// with what, or notFound when it touched or returned no row.
func oneRow(res *gorm.DB, what string, notFound error) error {
	switch {
	case res.Error != nil:
		return fmt.Errorf("%s: %w", what, res.Error)
	case res.RowsAffected == 0:
		return notFound
	}
	return nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func insertKey(tx *gorm.DB, r *keyRow) error {
	if err := tx.Create(r).Error; err != nil {
		return fmt.Errorf("insert api key: %w", err)
	}
	return nil
}

func listKeys(tx *gorm.DB, after uuid.UUID, limit int) ([]Key, error) {
	out, err := page.Find(tx, after, limit, func(r keyRow) (Key, error) { return r.toModel(), nil })
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return out, nil
}

// findKey returns a key of the tenant, revoked or not; ErrKeyNotFound when
// there is none with that id.
func findKey(tx *gorm.DB, id uuid.UUID) (Key, error) {
	r, err := db.Take[keyRow](tx.Where("id = ?", id), false, ErrKeyNotFound)
	return r.toModel(), err
}

// revokeKey marks a live key revoked and returns it; ErrKeyNotFound when the
// key does not exist in the tenant or is already revoked.
func revokeKey(tx *gorm.DB, id uuid.UUID) (Key, error) {
	var r keyRow
	res := tx.Raw(`UPDATE api_keys SET revoked_at = now() WHERE id = ? AND revoked_at IS NULL RETURNING *`, id).Scan(&r)
	if err := oneRow(res, "revoke api key", ErrKeyNotFound); err != nil {
		return Key{}, err
	}
	return r.toModel(), nil
}

// keyLookup is a row of auth_api_key_lookup: the key and its tenant, found by
// prefix before the tenant is known.
type keyLookup struct {
	KeyID        uuid.UUID
	TenantID     uuid.UUID
	SecretHash   []byte
	Roles        db.TextArray
	ExpiresAt    *time.Time
	RevokedAt    *time.Time
	TenantSlug   string
	TenantStatus string
	TenantPlan   string
}

var errNoKey = errors.New("no key with that prefix")

func lookupKey(ctx context.Context, d *db.DB, prefix string) (keyLookup, error) {
	var r keyLookup
	res := d.Unscoped(ctx).Raw(`SELECT * FROM auth_api_key_lookup(?)`, prefix).Scan(&r)
	if err := oneRow(res, "look up api key", errNoKey); err != nil {
		return keyLookup{}, err
	}
	return r, nil
}
