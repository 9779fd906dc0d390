package billing_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantd/tenantd/billing"
)

// TestExportCLI runs "tenantd billing export" as the operator would: to a
// file, then to stdout, each giving the golden bytes; and its refusals,
// which leave no file behind.
func TestExportCLI(t *testing.T) {
	t.Parallel()
	x := newGoldenDB(t)
	dir := t.TempDir()
	run := func(t *testing.T, args ...string) (stdout, stderr string, err error) {
		t.Helper()
		var out, errOut bytes.Buffer
		err = billing.RunExportCLI(t.Context(), x.app, args, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	readGolden := func(t *testing.T, name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("to a file", func(t *testing.T) {
		file := filepath.Join(dir, "2026-09.csv")
		stdout, stderr, err := run(t, "--period", "2026-09", "--format", "csv", "--out", file)
		if err != nil {
			t.Fatalf("got error %v (stderr %s)", err, stderr)
		}
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if want := readGolden(t, "export-2026-09.csv"); !bytes.Equal(got, want) {
			t.Errorf("got file\n%s\nwant the golden export\n%s", got, want)
		}
		sum := sha256.Sum256(got)
		if want := hex.EncodeToString(sum[:]) + "  " + file + "\n"; stdout != want {
			t.Errorf("got stdout %q, want %q (sha256sum format)", stdout, want)
		}
		for _, want := range []string{"billing export 2026-09 (csv): 25 lines", hex.EncodeToString(sum[:]), "the period closed now",
			"billing export 2026-09: 6/6 tenants, 25 lines"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("got stderr %q, want it to contain %q", stderr, want)
			}
		}
	})
	t.Run("to stdout", func(t *testing.T) {
		stdout, stderr, err := run(t, "--period=2026-09", "--format=jsonl")
		if err != nil {
			t.Fatalf("got error %v (stderr %s)", err, stderr)
		}
		if want := readGolden(t, "export-2026-09.jsonl"); stdout != string(want) {
			t.Errorf("got stdout\n%s\nwant the golden export\n%s", stdout, want)
		}
		if !strings.Contains(stderr, "the period was closed already") {
			t.Errorf("got stderr %q, want it to say the period was closed already", stderr)
		}
	})

	open := time.Now().UTC().Format("2006-01")
	t.Run("preview of the open period", func(t *testing.T) {
		stdout, stderr, err := run(t, "--period", open, "--provisional")
		if err != nil {
			t.Fatalf("got error %v (stderr %s)", err, stderr)
		}
		if !strings.Contains(stdout, ","+"provisional,") || strings.Contains(stdout, ",final,") {
			t.Errorf("got stdout %q, want provisional lines only", stdout)
		}
		if !strings.Contains(stderr, "provisional") || !strings.Contains(stderr, "nothing closed or recorded") {
			t.Errorf("got stderr %q, want it to say nothing was closed", stderr)
		}
	})

	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"no period", []string{"--format", "csv"}, "--period YYYY-MM is required"},
		{"bad period", []string{"--period", "2026-13"}, "--period must be a month as YYYY-MM"},
		{"bad format", []string{"--period", "2026-09", "--format", "xml"}, "--format must be csv, jsonl, cloudevents or stripe-meter-events"},
		{"open period", []string{"--period", open}, "has not ended"},
		{"preview of a closed period", []string{"--period", "2026-09", "--provisional"}, "is closed"},
		{"unknown flag", []string{"--period", "2026-09", "--tenant", "acme"}, "flag provided but not defined"},
		{"extra argument", []string{"--period", "2026-09", "now"}, `unexpected argument "now"`},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, "refused-"+strings.ReplaceAll(tt.name, " ", "-"))
			_, _, err := run(t, append(tt.args, "--out", file)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
			if _, err := os.Stat(file); !os.IsNotExist(err) {
				t.Errorf("got %s created (stat: %v), want no file", file, err)
			}
		})
	}
	t.Run("no temporary files left", func(t *testing.T) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "2026-09.csv" {
				t.Errorf("got %s in the output directory, want only 2026-09.csv", e.Name())
			}
		}
	})
	t.Run("help", func(t *testing.T) {
		_, stderr, err := run(t, "--help")
		if err != nil || !strings.Contains(stderr, "Usage: tenantd billing export") || !strings.Contains(stderr, "-provisional") {
			t.Errorf("got error %v and %q, want the usage and no error", err, stderr)
		}
	})
}
