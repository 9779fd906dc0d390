package inventory

import (
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
)

// Product is an item a tenant sells, with its stock. Stock is what is on
// hand; Reserved is the part of it held for pending orders.
type Product struct {
	ID        uuid.UUID
	TenantID  uuid.UUID
	SKU       string
	Name      string
	Price     int64 // minor units of Currency
	Currency  string
	Stock     int64
	Reserved  int64
	Version   int // starts at 1 and grows by one with every change
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Available is the stock that can still be sold: on hand minus reserved.
func (p Product) Available() int64 { return p.Stock - p.Reserved }

// NewProduct is the input for adding a product to the catalogue.
type NewProduct struct {
	SKU      string
	Name     string
	Price    int64
	Currency string
	Stock    int64
}

// ProductChange is a partial update of a product; nil fields stay as they
// are. Stock is not here: it changes only through a StockAdjustment.
type ProductChange struct {
	SKU      *string
	Name     *string
	Price    *int64
	Currency *string
	// IfVersion, when set, makes the change apply only if the product is
	// still at that version (optimistic concurrency, HTTP If-Match).
	IfVersion *int
}

// StockAdjustment adds Delta (negative to remove) to the stock on hand.
// Reason says why: a delivery, a stock count, breakage. It is validated but
// not yet stored, as no table or event log in this module holds it yet.
type StockAdjustment struct {
	Delta  int64
	Reason string
}

// ListQuery selects a page of products ordered by id.
type ListQuery struct {
	After uuid.UUID // uuid.Nil for the first page
	Limit int       // 1–MaxListLimit; anything else means DefaultListLimit
	SKU   string    // exact SKU filter; "" for all products
}

// Page sizes for ListQuery.
const (
	DefaultListLimit = 50
	MaxListLimit     = 200
)

// Sentinel errors.
var (
	ErrNotFound        = fault.New(fault.NotFound, "product not found")
	ErrSKUTaken        = fault.New(fault.Conflict, "a product with this sku already exists")
	ErrBelowReserved   = fault.New(fault.Conflict, "the adjustment would take stock on hand below zero or below the reserved stock")
	ErrReserved        = fault.New(fault.Conflict, "the product has reserved stock and cannot be deleted")
	ErrInUse           = fault.New(fault.Conflict, "the product is referenced by other records and cannot be deleted")
	ErrVersionMismatch = fault.New(fault.PreconditionFailed, "the product has changed since the given version")
	ErrStockOverflow   = fault.Invalid(fault.Field("delta", "would take stock beyond the largest storable quantity"))
)

var (
	skuPattern      = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
)

// ValidSKU reports whether s is a well-formed SKU: 1–64 of A-Z, a-z, 0-9,
// '.', '_' and '-'.
func ValidSKU(s string) bool { return skuPattern.MatchString(s) }

// Validate checks a new product's fields and trims its name.
func (n *NewProduct) Validate() error {
	var f fault.Fields
	n.Name = strings.TrimSpace(n.Name)
	checkSKU(&f, n.SKU)
	checkName(&f, n.Name)
	checkPrice(&f, n.Price)
	checkCurrency(&f, n.Currency)
	if n.Stock < 0 {
		f.Add("stock", "must be zero or more")
	}
	return f.Err()
}

// Validate checks the fields a change sets, trims the name, and refuses a
// change that sets nothing.
func (c *ProductChange) Validate() error {
	var f fault.Fields
	if c.SKU == nil && c.Name == nil && c.Price == nil && c.Currency == nil {
		f.Add("body", "nothing to change: give sku, name, price or currency")
		return f.Err()
	}
	if c.SKU != nil {
		checkSKU(&f, *c.SKU)
	}
	if c.Name != nil {
		name := strings.TrimSpace(*c.Name)
		c.Name = &name
		checkName(&f, name)
	}
	if c.Price != nil {
		checkPrice(&f, *c.Price)
	}
	if c.Currency != nil {
		checkCurrency(&f, *c.Currency)
	}
	return f.Err()
}

// apply returns p with the change's fields set.
func (c ProductChange) apply(p Product) Product {
	if c.SKU != nil {
		p.SKU = *c.SKU
	}
	if c.Name != nil {
		p.Name = *c.Name
	}
	if c.Price != nil {
		p.Price = *c.Price
	}
	if c.Currency != nil {
		p.Currency = *c.Currency
	}
	return p
}

// Validate checks an adjustment: a non-zero delta and a reason.
func (a *StockAdjustment) Validate() error {
	var f fault.Fields
	if a.Delta == 0 {
		f.Add("delta", "must be a non-zero integer")
	}
	a.Reason = strings.TrimSpace(a.Reason)
	if !validText(a.Reason, 200) {
		f.Add("reason", "must be 1 to 200 characters, without control characters")
	}
	return f.Err()
}

func checkSKU(f *fault.Fields, sku string) {
	if !ValidSKU(sku) {
		f.Add("sku", "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
	}
}

func checkName(f *fault.Fields, name string) {
	if !validText(name, 200) {
		f.Add("name", "must be 1 to 200 characters, without control characters")
	}
}

func checkPrice(f *fault.Fields, price int64) {
	if price < 0 {
		f.Add("price", "must be zero or more (minor units)")
	}
}

func checkCurrency(f *fault.Fields, currency string) {
	if !currencyPattern.MatchString(currency) {
		f.Add("currency", "must be a three-letter ISO 4217 code in capitals, such as EUR")
	}
}

// validText reports whether s is 1 to maxRunes runes of valid UTF-8 without
// control characters (PostgreSQL text cannot hold NUL at all).
func validText(s string, maxRunes int) bool {
	n := utf8.RuneCountInString(s)
	if n < 1 || n > maxRunes || !utf8.ValidString(s) {
		return false
	}
	return strings.IndexFunc(s, unicode.IsControl) < 0
}
