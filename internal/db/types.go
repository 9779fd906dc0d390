package db

import (
	"database/sql/driver"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgtype"
)

// TextArray is a PostgreSQL text[] column as a Go string slice, for GORM row
// structs (database/sql does not scan arrays by itself).
type TextArray []string

// typeMap encodes and scans text[]; a pgtype.Map memoizes plans in plain
// maps and is not safe for concurrent use, hence typeMu.
var (
	typeMu  sync.Mutex
	typeMap = pgtype.NewMap()
)

// Scan implements sql.Scanner.
func (a *TextArray) Scan(src any) error {
	var out []string
	typeMu.Lock()
	err := typeMap.SQLScanner(&out).Scan(src)
	typeMu.Unlock()
	if err != nil {
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
	typeMu.Lock()
	buf, err := typeMap.Encode(pgtype.TextArrayOID, pgtype.TextFormatCode, []string(a), nil)
	typeMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("encode text[]: %w", err)
	}
	return string(buf), nil
}
