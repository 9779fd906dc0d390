package billing

import (
	"math"
	"testing"

	"github.com/tenantd/tenantd/internal/testenv"
)

// TestCharge checks the Go charge (usage API) against the SQL one
// (billing_billable and billing_amount, the exports) on the edges: nothing
// over, a started unit, an exact multiple, hard limits, and quantities near
// the largest bigint, where adding unit_size before dividing would overflow.
func TestCharge(t *testing.T) {
	t.Parallel()
	d := testenv.Get(t).OpenDB(t, 2)
	tests := []struct {
		name                     string
		terms                    meterTerms
		quantity                 int64
		wantBillable, wantAmount int64
	}{
		{"nothing used", meterTerms{Included: 100, UnitPrice: 5, UnitSize: 10}, 0, 0, 0},
		{"exactly included", meterTerms{Included: 100, UnitPrice: 5, UnitSize: 10}, 100, 0, 0},
		{"one over starts a unit", meterTerms{Included: 100, UnitPrice: 5, UnitSize: 10}, 101, 1, 5},
		{"a whole unit", meterTerms{Included: 100, UnitPrice: 5, UnitSize: 10}, 110, 10, 5},
		{"a unit and one", meterTerms{Included: 100, UnitPrice: 5, UnitSize: 10}, 111, 11, 10},
		{"hard limit", meterTerms{Included: 100, UnitPrice: 5, UnitSize: 10, HardLimit: true}, 1_000_000, 0, 0},
		{"free soft meter", meterTerms{Included: 0, UnitPrice: 0, UnitSize: 1}, 42, 42, 0},
		{"near the largest bigint", meterTerms{Included: 0, UnitPrice: 1, UnitSize: 1000}, math.MaxInt64, math.MaxInt64, math.MaxInt64/1000 + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			billable, amount := tt.terms.charge(tt.quantity)
			if billable != tt.wantBillable || amount != tt.wantAmount {
				t.Errorf("Go: got billable %d amount %d, want %d and %d", billable, amount, tt.wantBillable, tt.wantAmount)
			}
			var got struct{ Billable, Amount int64 }
			err := d.Unscoped(t.Context()).Raw(`
				SELECT billing_billable(?::bigint, ?::bigint, ?::boolean) AS billable,
				       billing_amount(billing_billable(?::bigint, ?::bigint, ?::boolean), ?::bigint, ?::bigint) AS amount`,
				tt.quantity, tt.terms.Included, tt.terms.HardLimit,
				tt.quantity, tt.terms.Included, tt.terms.HardLimit, tt.terms.UnitPrice, tt.terms.UnitSize).Scan(&got).Error
			if err != nil {
				t.Fatal(err)
			}
			if got.Billable != tt.wantBillable || got.Amount != tt.wantAmount {
				t.Errorf("SQL: got billable %d amount %d, want %d and %d", got.Billable, got.Amount, tt.wantBillable, tt.wantAmount)
			}
		})
	}
}
