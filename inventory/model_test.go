package inventory_test

import (
	"math"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/inventory"
)

func ptr[T any](v T) *T { return &v }

func TestNewProductValidate(t *testing.T) {
	valid := func() inventory.NewProduct {
		return inventory.NewProduct{SKU: "SKU-1.a_b", Name: "Widget", Price: 0, Currency: "EUR", Stock: 0}
	}
	tests := []struct {
		name   string
		edit   func(*inventory.NewProduct)
		fields []string // nil: valid
	}{
		{"valid", func(*inventory.NewProduct) {}, nil},
		{"largest values", func(n *inventory.NewProduct) {
			n.SKU, n.Name, n.Price, n.Stock = strings.Repeat("x", 64), strings.Repeat("é", 200), math.MaxInt64, math.MaxInt64
		}, nil},
		{"empty sku", func(n *inventory.NewProduct) { n.SKU = "" }, []string{"sku"}},
		{"long sku", func(n *inventory.NewProduct) { n.SKU = strings.Repeat("x", 65) }, []string{"sku"}},
		{"sku with space", func(n *inventory.NewProduct) { n.SKU = "a b" }, []string{"sku"}},
		{"sku with slash", func(n *inventory.NewProduct) { n.SKU = "a/b" }, []string{"sku"}},
		{"blank name", func(n *inventory.NewProduct) { n.Name = "   " }, []string{"name"}},
		{"long name", func(n *inventory.NewProduct) { n.Name = strings.Repeat("é", 201) }, []string{"name"}},
		{"name with NUL", func(n *inventory.NewProduct) { n.Name = "a\x00b" }, []string{"name"}},
		{"negative price", func(n *inventory.NewProduct) { n.Price = -1 }, []string{"price"}},
		{"lower-case currency", func(n *inventory.NewProduct) { n.Currency = "eur" }, []string{"currency"}},
		{"long currency", func(n *inventory.NewProduct) { n.Currency = "EURO" }, []string{"currency"}},
		{"negative stock", func(n *inventory.NewProduct) { n.Stock = -1 }, []string{"stock"}},
		{"everything wrong", func(n *inventory.NewProduct) { *n = inventory.NewProduct{Price: -1, Stock: -1} },
			[]string{"currency", "name", "price", "sku", "stock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := valid()
			tt.edit(&n)
			wantFields(t, n.Validate(), tt.fields)
		})
	}
}

func TestNewProductValidateTrimsName(t *testing.T) {
	n := inventory.NewProduct{SKU: "a", Name: "  Widget \t", Currency: "EUR"}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if n.Name != "Widget" {
		t.Errorf("got name %q, want %q", n.Name, "Widget")
	}
}

func TestProductChangeValidate(t *testing.T) {
	tests := []struct {
		name   string
		change inventory.ProductChange
		fields []string
	}{
		{"name only", inventory.ProductChange{Name: ptr("New")}, nil},
		{"every field", inventory.ProductChange{SKU: ptr("b"), Name: ptr("n"), Price: ptr(int64(5)), Currency: ptr("USD")}, nil},
		{"nothing", inventory.ProductChange{}, []string{"body"}},
		{"only a version", inventory.ProductChange{IfVersion: ptr(1)}, []string{"body"}},
		{"bad sku", inventory.ProductChange{SKU: ptr("")}, []string{"sku"}},
		{"blank name", inventory.ProductChange{Name: ptr(" ")}, []string{"name"}},
		{"negative price", inventory.ProductChange{Price: ptr(int64(-5))}, []string{"price"}},
		{"bad currency", inventory.ProductChange{Currency: ptr("E1R")}, []string{"currency"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFields(t, tt.change.Validate(), tt.fields)
		})
	}
}

func TestStockAdjustmentValidate(t *testing.T) {
	tests := []struct {
		name   string
		adj    inventory.StockAdjustment
		fields []string
	}{
		{"delivery", inventory.StockAdjustment{Delta: 10, Reason: "delivery"}, nil},
		{"breakage", inventory.StockAdjustment{Delta: -1, Reason: "broken"}, nil},
		{"zero delta", inventory.StockAdjustment{Delta: 0, Reason: "x"}, []string{"delta"}},
		{"no reason", inventory.StockAdjustment{Delta: 1}, []string{"reason"}},
		{"blank reason", inventory.StockAdjustment{Delta: 1, Reason: "  "}, []string{"reason"}},
		{"long reason", inventory.StockAdjustment{Delta: 1, Reason: strings.Repeat("r", 201)}, []string{"reason"}},
		{"both", inventory.StockAdjustment{}, []string{"delta", "reason"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFields(t, tt.adj.Validate(), tt.fields)
		})
	}
}

func TestAvailable(t *testing.T) {
	p := inventory.Product{Stock: 10, Reserved: 3}
	if got := p.Available(); got != 7 {
		t.Errorf("got %d, want 7", got)
	}
}
