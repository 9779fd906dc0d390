package db

import (
	"database/sql/driver"
	"fmt"

	"github.com/jackc/pgx/v5/pgtype"
)

// TextArray is a PostgreSQL text[] column as a Go string slice, for GORM row
// structs (database/sql does not scan arrays by itself).
type TextArray []string

var typeMap = pgtype.NewMap()

// Scan implements sql.Scanner.
func (a *TextArray) Scan(src any) error {
	var out []string
	if err := typeMap.SQLScanner(&out).Scan(src); err != nil {
		return fmt.Errorf("scan text[]: %w", err)
	}
	*a = out
	return nil
}

// Value implements driver.Valuer, encoding the array literal.
func (a TextArray) Value() (driver.Value, error) {
	if a == nil {
		a = TextArray{}
	}
	buf, err := typeMap.Encode(pgtype.TextArrayOID, pgtype.TextFormatCode, []string(a), nil)
	if err != nil {
		return nil, fmt.Errorf("encode text[]: %w", err)
	}
	return string(buf), nil
}
