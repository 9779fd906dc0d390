// Package page reads a table one page at a time in id order (keyset
// pagination), as the API's list routes return it: the page after a given
// id, with one row more than asked for so that the caller knows whether a
// next page exists.
package page

import (
	"github.com/google/uuid"
	"gorm.io/gorm"
)

// ByID narrows q to the page after the id after (uuid.Nil for the first
// page): up to limit+1 rows in id order.
func ByID(q *gorm.DB, after uuid.UUID, limit int) *gorm.DB {
	q = q.Order("id").Limit(limit + 1)
	if after != uuid.Nil {
		q = q.Where("id > ?", after)
	}
	return q
}

// Find reads the page of rows R after the id after (see ByID) and converts
// each with toModel.
func Find[R, M any](q *gorm.DB, after uuid.UUID, limit int, toModel func(R) (M, error)) ([]M, error) {
	var rows []R
	if err := ByID(q, after, limit).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]M, len(rows))
	for i, r := range rows {
		m, err := toModel(r)
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}
