package audit

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/identity"
)

// ActionFailedBurst is the action of the event recorded when failed
// authentications for one tenant reach the burst threshold.
const ActionFailedBurst = "auth.failed_burst"

// Failure is one failed authentication, described without its secret.
type Failure struct {
	// TenantID is the tenant the credential belongs to, when that is known
	// although it failed: an existing API key presented with a wrong
	// secret, or revoked, or expired.
	TenantID uuid.UUID
	// KeyPrefix is the public prefix of the API key presented, if any.
	KeyPrefix string
	// NamedTenant is the tenant the request named (X-Tenant or subdomain),
	// slug or id; identity.NamedTenant(ctx) when empty.
	NamedTenant string
}

// Limits of the failure counter: tracked subjects other than known
// tenants, and the distinct addresses and key prefixes kept per subject.
const (
	maxTrackedSubjects = 10_000
	maxListed          = 5
)

// failures counts failed authentications per subject (a tenant, a named
// tenant, or an address) in fixed windows.
type failures struct {
	mu        sync.Mutex
	threshold int
	window    time.Duration
	subjects  map[string]*burst
}

// burst is one subject's failures in the current window.
type burst struct {
	start    time.Time
	n        int
	ips      []string
	prefixes []string
}

func newFailures(threshold int, window time.Duration) *failures {
	return &failures{threshold: threshold, window: window, subjects: map[string]*burst{}}
}

// add counts a failure of subject at now and returns a snapshot of its
// window when the count has just reached the threshold, or ten, a hundred,
// … times it (so a long attack is recorded with its scale, a few times per
// window, never once per failure).
func (f *failures) add(subject, ip, prefix string, now time.Time) (burst, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.subjects[subject]
	if ok && now.Sub(b.start) >= f.window {
		ok = false
	}
	if !ok {
		// Known tenants are always tracked (only existing keys name one);
		// other subjects, which a client can make up, are capped.
		if len(f.subjects) >= maxTrackedSubjects && !strings.HasPrefix(subject, "tenant:") {
			f.sweep(now)
			if len(f.subjects) >= maxTrackedSubjects {
				return burst{}, false
			}
		}
		b = &burst{start: now}
		f.subjects[subject] = b
	}
	b.n++
	if ip != "" && len(b.ips) < maxListed && !slices.Contains(b.ips, ip) {
		b.ips = append(b.ips, ip)
	}
	if prefix != "" && len(b.prefixes) < maxListed && !slices.Contains(b.prefixes, prefix) {
		b.prefixes = append(b.prefixes, prefix)
	}
	if !f.milestone(b.n) {
		return burst{}, false
	}
	return burst{start: b.start, n: b.n, ips: slices.Clone(b.ips), prefixes: slices.Clone(b.prefixes)}, true
}

func (f *failures) milestone(n int) bool {
	for m := f.threshold; m > 0 && m <= n; m *= 10 {
		if n == m {
			return true
		}
	}
	return false
}

// sweep forgets subjects whose window has passed.
func (f *failures) sweep(now time.Time) {
	for k, b := range f.subjects {
		if now.Sub(b.start) >= f.window {
			delete(f.subjects, k)
		}
	}
}

// AuthFailed counts a failed authentication. When failures for one known
// tenant reach the burst threshold within the window (see Options), it
// records one auth.failed_burst event in that tenant's chain with the
// count, the window, up to five client addresses and key prefixes seen,
// and the current request's id, address and User-Agent.
//
// Failures are attributed to the credential's tenant when known (an
// existing API key), else to the tenant the request named if it exists.
// Others (an unknown key or token naming no tenant) have no tenant whose
// trail could hold them: they are counted per client address and a burst is
// only logged. Counting is per process: with N replicas a burst spread
// across them may take up to N times the threshold to show. Errors are
// logged, never returned: the client gets its 401 regardless.
func (a *Auditor) AuthFailed(ctx context.Context, f Failure) {
	o, _ := OriginFrom(ctx)
	if f.NamedTenant == "" {
		f.NamedTenant = identity.NamedTenant(ctx)
	}
	var subject string
	switch {
	case f.TenantID != uuid.Nil:
		subject = "tenant:" + f.TenantID.String()
	case f.NamedTenant != "":
		subject = "named:" + strings.ToLower(clean(f.NamedTenant, 100))
	case o.IP != "":
		subject = "ip:" + canonicalIP(o.IP)
	default:
		return
	}
	b, hit := a.failures.add(subject, canonicalIP(o.IP), clean(f.KeyPrefix, 40), a.now())
	if !hit {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	tenantID := f.TenantID
	if tenantID == uuid.Nil && f.NamedTenant != "" {
		ts, err := listTenants(ctx, a.db, f.NamedTenant)
		if err != nil || len(ts) != 1 {
			a.log.WarnContext(ctx, "audit: burst of failed authentications naming an unknown tenant",
				"named_tenant", clean(f.NamedTenant, 100), "failures", b.n, "ips", b.ips)
			return
		}
		tenantID = ts[0].ID
	}
	if tenantID == uuid.Nil {
		a.log.WarnContext(ctx, "audit: burst of failed authentications from one address, for no known tenant",
			"ip", canonicalIP(o.IP), "failures", b.n)
		return
	}
	summary := map[string]any{
		"failures":       b.n,
		"window_seconds": int64(a.failures.window / time.Second),
		"window_start":   b.start.UTC().Format(time.RFC3339),
		"ips":            b.ips,
	}
	if len(b.prefixes) > 0 {
		summary["key_prefixes"] = b.prefixes
	}
	e := Entry{Actor: "anonymous", Action: ActionFailedBurst, Resource: "tenant:" + tenantID.String(),
		Status: http.StatusUnauthorized, Summary: summary}
	if err := a.write(ctx, tenantID, e); err != nil {
		a.log.ErrorContext(ctx, "audit: recording a burst of failed authentications failed",
			"tenant_id", tenantID, "failures", b.n, "err", err)
	}
}
