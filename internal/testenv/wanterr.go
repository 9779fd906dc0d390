package testenv

import (
	"strings"
	"testing"
)

// WantErr checks the error of call what against want, text the error must
// contain, or "" for no error, and fails the test at once on a mismatch.
// It reports whether an error was wanted: a table test's case that wanted
// one has nothing more to check.
func WantErr(t testing.TB, what string, err error, want string) (wanted bool) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("%s: got error %v, want none", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("%s: got error %v, want one containing %q", what, err, want)
	}
	return want != ""
}
