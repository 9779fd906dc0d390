package billing

import (
	"errors"
	"testing"
)

// TestCheckExport checks the period and format check the export paths
// (Issue, Preview, the CLI) share: both valid, each wrong or missing alone,
// and both wrong, where the period is reported first.
func TestCheckExport(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, period, format string
		want                 error
	}{
		{"valid", "2026-11", "stripe-meter-events", nil},
		{"month 13", "2026-13", "csv", ErrBadPeriod},
		{"unknown format", "2026-11", "xml", ErrBadFormat},
		{"no format", "2026-12", "", ErrBadFormat},
		{"no period", "", "csv", ErrBadPeriod},
		{"both wrong", "26-11", "", ErrBadPeriod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := checkExport(tt.period, tt.format); !errors.Is(err, tt.want) {
				t.Errorf("checkExport(%q, %q) = %v, want %v", tt.period, tt.format, err, tt.want)
			}
		})
	}
}
