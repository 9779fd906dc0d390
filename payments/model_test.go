package payments_test

import (
	"errors"
	"testing"

	"github.com/tenantd/tenantd/payments"
)

func TestCheckRefund(t *testing.T) {
	t.Parallel()
	succeeded := payments.Payment{Status: payments.StatusSucceeded, Amount: 1000, Captured: 1000, Refunded: 400}
	tests := []struct {
		name    string
		payment payments.Payment
		amount  int64
		want    error
	}{
		{"within what is left", succeeded, 599, nil},
		{"exactly what is left", succeeded, 600, nil},
		{"one more than is left", succeeded, 601, payments.ErrRefundTooLarge},
		{"failed payment", payments.Payment{Status: payments.StatusFailed, Amount: 1000, FailureReason: payments.ReasonDeclined}, 1, payments.ErrNotRefundable},
		{"processing payment", payments.Payment{Status: payments.StatusProcessing, Amount: 1000}, 1, payments.ErrPaymentUnsettled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := payments.CheckRefund(tt.payment, tt.amount); !errors.Is(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidMethod(t *testing.T) {
	t.Parallel()
	for m, want := range map[string]bool{"card": true, "card_declined": true, "card_error": true, "": false, "Card": false, "cash": false} {
		if got := payments.ValidMethod(m); got != want {
			t.Errorf("ValidMethod(%q): got %v, want %v", m, got, want)
		}
	}
}
