package testenv

import (
	"errors"
	"fmt"
	"testing"
)

// fatalRecorder is a testing.TB whose Fatalf records its message and
// returns, for checking a helper's verdict.
type fatalRecorder struct {
	testing.TB
	fatal string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

func TestWantErr(t *testing.T) {
	t.Parallel()
	refused := errors.New("verify: token expired")
	tests := []struct {
		name       string
		err        error
		want       string
		wantWanted bool
		wantFatal  string
	}{
		{"no error wanted, none got", nil, "", false, ""},
		{"no error wanted, one got", refused, "", false, "verify: got error verify: token expired, want none"},
		{"error wanted and got", refused, "expired", true, ""},
		{"error wanted, none got", nil, "expired", true, `verify: got error <nil>, want one containing "expired"`},
		{"error wanted, another got", refused, "audience", true, `verify: got error verify: token expired, want one containing "audience"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &fatalRecorder{TB: t}
			if got := WantErr(r, "verify", tt.err, tt.want); got != tt.wantWanted {
				t.Errorf("got wanted %v, want %v", got, tt.wantWanted)
			}
			if r.fatal != tt.wantFatal {
				t.Errorf("got failure %q, want %q", r.fatal, tt.wantFatal)
			}
		})
	}
}
