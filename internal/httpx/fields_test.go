package httpx_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
)

// TestRequired: a given field is copied, a missing one named "is
// required", after what f named already.
func TestRequired(t *testing.T) {
	var f fault.Fields
	f.Add("order_id", "must be a UUID")
	amount, name := int64(2599), ""
	var gotAmount, gotCurrency int64
	gotName := "unset"
	httpx.Required(&f, "amount", &amount, &gotAmount)
	httpx.Required(&f, "currency", nil, &gotCurrency)
	httpx.Required(&f, "name", &name, &gotName)
	if gotAmount != 2599 || gotCurrency != 0 || gotName != "" {
		t.Errorf("got amount %d, currency %d, name %q; want 2599, 0 and the given empty name", gotAmount, gotCurrency, gotName)
	}
	want := fault.Fields{fault.Field("order_id", "must be a UUID"), fault.Field("currency", "is required")}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got fields %v, want %v", f, want)
	}
}

// TestAddInvalid: the fields a fault error names are added after f's,
// except those f names already; an error without fields, another error
// or none adds nothing.
func TestAddInvalid(t *testing.T) {
	missing := fault.Field("sku", "is required")
	tests := []struct {
		name string
		err  error
		want fault.Fields
	}{
		{"validation", fault.Invalid(fault.Field("sku", "must be 1 to 64 characters"), fault.Field("price", "must be zero or more"),
			fault.Field("currency", "must be a three-letter ISO 4217 code")),
			fault.Fields{missing, fault.Field("price", "must be zero or more"), fault.Field("currency", "must be a three-letter ISO 4217 code")}},
		{"another fault with fields", &fault.Error{Code: fault.AmountMismatch, Message: "m", Fields: []fault.FieldError{fault.Field("amount", "must equal")}},
			fault.Fields{missing, fault.Field("amount", "must equal")}},
		{"a fault without fields", fault.New(fault.Conflict, "c"), fault.Fields{missing}},
		{"not a fault", errors.New("plain"), fault.Fields{missing}},
		{"none", nil, fault.Fields{missing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fault.Fields{missing}
			httpx.AddInvalid(&f, tt.err)
			if !reflect.DeepEqual(f, tt.want) {
				t.Errorf("got %v, want %v", f, tt.want)
			}
		})
	}
}
