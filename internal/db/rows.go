package db

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Take reads the row of R that q selects (the first, should it select
// several); with forUpdate it also locks the row until the transaction
// ends. No row gives notFound; any other error comes back wrapped with the
// table's name.
func Take[R any](q *gorm.DB, forUpdate bool, notFound error) (R, error) {
	if forUpdate {
		q = q.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate})
	}
	var r, zero R
	res := q.Take(&r)
	switch {
	case errors.Is(res.Error, gorm.ErrRecordNotFound):
		return zero, notFound
	case res.Error != nil:
		return zero, fmt.Errorf("read %s: %w", res.Statement.Table, res.Error)
	}
	return r, nil
}

// TenantRow reads the row of R with the given id of tenantID, as Take
// does. The statement names tenant_id, so that Citus routes it to the
// tenant's shard.
func TenantRow[R any](tx *gorm.DB, tenantID, id uuid.UUID, forUpdate bool, notFound error) (R, error) {
	return Take[R](tx.Where("tenant_id = ? AND id = ?", tenantID, id), forUpdate, notFound)
}
