package audit_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestVerifyCLI proves `tenantd audit verify` reports each tenant's chain,
// names the first broken seq and fails when a chain is broken. It runs
// before the parallel tests, so the database holds only its tenants.
func TestVerifyCLI(t *testing.T) {
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	owner := env.OpenOwnerDB(t)
	su := openSuperuser(t, env)
	good, bad, empty := testenv.NewTenant(t), testenv.NewTenant(t), testenv.NewTenant(t)
	for _, tn := range []testenv.Tenant{good, bad} {
		ctx := actingCtx(context.Background(), tn.ID, "k")
		for range 3 {
			record(t, app, ctx, tn.ID, audit.Entry{Action: "member.roles_changed", Resource: "member:1",
				Summary: map[string]any{"before": map[string]any{"roles": []string{"viewer"}}, "after": map[string]any{"roles": []string{"admin"}}}})
		}
	}
	goodHead := events(t, app, good.ID)[2].Hash
	waitSealed(t, app, bad.ID)
	// Chains an earlier run of this test (-count) broke stay broken.
	before, err := audit.VerifyAll(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	brokenBefore := 0
	for _, r := range before {
		if !r.OK() {
			brokenBefore++
		}
	}
	if n := tamper(t, su, `UPDATE audit_events SET summary = jsonb_set(summary, '{after,roles}', '["viewer"]')
		WHERE tenant_id = ? AND seq = 2`, bad.ID); n != 1 {
		t.Fatalf("tamper: got %d rows, want 1", n)
	}
	okLine := func(tn testenv.Tenant, n int, head []byte) string {
		return fmt.Sprintf("ok      %s %s events=%d head=%d:%s\n", tn.ID, tn.Slug, n, n, hex.EncodeToString(head))
	}
	goodLine, emptyLine := okLine(good, 3, goodHead), okLine(empty, 0, nil)
	var tenants int64
	if err := owner.Unscoped(t.Context()).Raw("SELECT count(*) FROM tenants").Scan(&tenants).Error; err != nil {
		t.Fatal(err)
	}
	badLine := fmt.Sprintf("BROKEN  %s %s seq=2 reason=hash_mismatch (", bad.ID, bad.Slug)

	tests := []struct {
		name      string
		args      []string
		wantLines []string // lines expected in the output (a broken line by its start)
		wantEnd   string   // the last line
		wantErr   error    // nil, or an error the result must wrap
		wantErrIn string   // text the error must contain
	}{
		{"one tenant by slug", []string{"--tenant", good.Slug}, []string{goodLine}, "1 tenants verified, 0 broken\n", nil, ""},
		{"one tenant by id", []string{"--tenant=" + bad.ID.String()}, []string{badLine}, "1 tenants verified, 1 broken\n", audit.ErrChainBroken, ""},
		{"an empty chain holds", []string{"-tenant", empty.ID.String()}, []string{emptyLine}, "1 tenants verified, 0 broken\n", nil, ""},
		{"every tenant", nil, []string{goodLine, badLine, emptyLine}, fmt.Sprintf("%d tenants verified, %d broken\n", tenants, brokenBefore+1), audit.ErrChainBroken, ""},
		{"unknown tenant", []string{"--tenant", "no-such-tenant"}, nil, "", audit.ErrTenantNotFound, ""},
		{"unknown flag", []string{"--bogus"}, nil, "", nil, "usage: tenantd audit verify"},
		{"extra argument", []string{"now"}, nil, "", nil, `unexpected argument "now"`},
		{"help", []string{"-h"}, nil, "usage: tenantd audit verify [--tenant ID|SLUG | --platform] [--max-unsealed-age 10s]\n", nil, ""},
		{"bad age", []string{"--max-unsealed-age", "0s"}, nil, "", nil, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := audit.RunVerifyCLI(t.Context(), app, tt.args, &out)
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("got error %v, want %v", err, tt.wantErr)
			case tt.wantErrIn != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErrIn)):
				t.Errorf("got error %v, want one saying %q", err, tt.wantErrIn)
			case tt.wantErr == nil && tt.wantErrIn == "" && err != nil:
				t.Errorf("got error %v, want nil", err)
			}
			got := out.String()
			for _, line := range tt.wantLines {
				if !strings.Contains(got, line) {
					t.Errorf("got output\n%s\nwant it to contain %q", got, line)
				}
			}
			if tt.wantEnd != "" && !strings.HasSuffix(got, tt.wantEnd) {
				t.Errorf("got output\n%s\nwant it to end with %q", got, tt.wantEnd)
			}
		})
	}

	t.Run("VerifyAll", func(t *testing.T) {
		rs, err := audit.VerifyAll(t.Context(), app)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, r := range rs {
			state := "ok"
			if !r.OK() {
				state = fmt.Sprintf("broken at %d: %s", r.Broken.Seq, r.Broken.Reason)
			}
			got[r.TenantID.String()] = state
		}
		want := map[string]string{good.ID.String(): "ok", bad.ID.String(): "broken at 2: hash_mismatch", empty.ID.String(): "ok"}
		for id, w := range want {
			if got[id] != w {
				t.Errorf("tenant %s: got %q, want %q", id, got[id], w)
			}
		}
	})
}
