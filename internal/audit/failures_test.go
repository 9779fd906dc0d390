package audit_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
)

// burstSummary is the summary of an auth.failed_burst event.
type burstSummary struct {
	Failures      int      `json:"failures"`
	WindowSeconds int      `json:"window_seconds"`
	IPs           []string `json:"ips"`
	KeyPrefixes   []string `json:"key_prefixes"`
}

// TestAuthFailedBursts proves failed authentications against a known
// tenant become auth.failed_burst events at the threshold and its powers of
// ten within a window, attributed by key or by named tenant, and that
// failures with no known tenant write nothing.
func TestAuthFailedBursts(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	const threshold = 3

	origin := func(ip string) context.Context {
		ctx := identity.WithRequestID(context.Background(), "req-burst")
		return audit.WithOrigin(ctx, audit.Origin{IP: ip, UserAgent: "brute/1.0"})
	}
	bursts := func(t *testing.T, tenantID uuid.UUID) []burstSummary {
		t.Helper()
		var out []burstSummary
		for _, e := range events(t, app, tenantID) {
			if e.Action != audit.ActionFailedBurst || e.Actor != "anonymous" || e.Status != 401 ||
				e.Resource != "tenant:"+tenantID.String() || e.UserAgent != "brute/1.0" || e.RequestID != "req-burst" {
				t.Errorf("got event %+v, want an auth.failed_burst by anonymous, 401, on tenant:%s, with the request's origin", e, tenantID)
			}
			var s burstSummary
			if err := json.Unmarshal(e.Summary, &s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	counts := func(bs []burstSummary) []int {
		out := []int{}
		for _, b := range bs {
			out = append(out, b.Failures)
		}
		return out
	}

	t.Run("by key, at the threshold and its powers of ten, per window", func(t *testing.T) {
		t.Parallel()
		tn := testenv.NewTenant(t)
		clk := testenv.NewClock(time.Now())
		aud := audit.New(app, testenv.Logger(), audit.Options{FailureBurst: threshold, FailureWindow: time.Minute, Now: clk.Now})
		steps := []struct {
			failures int
			advance  time.Duration
			want     []int
		}{
			{threshold - 1, 0, []int{}},
			{1, 0, []int{3}},
			{26, 0, []int{3}},
			{1, 0, []int{3, 30}},
			{5, 0, []int{3, 30}},
			// A new window counts from zero.
			{threshold, time.Minute, []int{3, 30, 3}},
		}
		for i, s := range steps {
			clk.Advance(s.advance)
			for j := range s.failures {
				ip := []string{"198.51.100.1", "198.51.100.2"}[j%2]
				aud.AuthFailed(origin(ip), audit.Failure{TenantID: tn.ID, KeyPrefix: "pfx" + string(rune('a'+j%7))})
			}
			if got := counts(bursts(t, tn.ID)); !slices.Equal(got, s.want) {
				t.Fatalf("step %d: got bursts %v, want %v", i, got, s.want)
			}
		}
		b := bursts(t, tn.ID)[0]
		if !slices.Equal(b.IPs, []string{"198.51.100.1", "198.51.100.2"}) || !slices.Equal(b.KeyPrefixes, []string{"pfxa", "pfxb"}) || b.WindowSeconds != 60 {
			t.Errorf("got first burst %+v, want both addresses, prefixes pfxa and pfxb, a 60 s window", b)
		}
		if got := bursts(t, tn.ID)[1]; len(got.KeyPrefixes) != 5 {
			t.Errorf("got key prefixes %v, want 5 (the limit)", got.KeyPrefixes)
		}
	})

	t.Run("by named tenant", func(t *testing.T) {
		t.Parallel()
		for _, name := range []string{"slug", "id"} {
			t.Run(name, func(t *testing.T) {
				tn := testenv.NewTenant(t)
				aud := audit.New(app, testenv.Logger(), audit.Options{FailureBurst: threshold})
				named := tn.Slug
				if name == "id" {
					named = tn.ID.String()
				}
				for range threshold {
					aud.AuthFailed(identity.WithNamedTenant(origin("192.0.2.44"), named), audit.Failure{})
				}
				bs := bursts(t, tn.ID)
				if got := counts(bs); !slices.Equal(got, []int{threshold}) {
					t.Fatalf("got bursts %v, want [%d]", got, threshold)
				}
				if !slices.Equal(bs[0].IPs, []string{"192.0.2.44"}) {
					t.Errorf("got ips %v, want [192.0.2.44]", bs[0].IPs)
				}
			})
		}
	})

	t.Run("no known tenant records nothing", func(t *testing.T) {
		t.Parallel()
		tn := testenv.NewTenant(t)
		aud := audit.New(app, testenv.Logger(), audit.Options{FailureBurst: threshold})
		for range 3 * threshold {
			aud.AuthFailed(origin("192.0.2.45"), audit.Failure{KeyPrefix: "unknownprefix"})
			aud.AuthFailed(origin("192.0.2.45"), audit.Failure{NamedTenant: "no-such-tenant-" + tn.Slug})
		}
		if got := bursts(t, tn.ID); len(got) != 0 {
			t.Errorf("got bursts %v, want none", got)
		}
	})
}
