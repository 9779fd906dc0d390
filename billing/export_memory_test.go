package billing_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantd/tenantd/billing"
)

const (
	// longTestsEnv set to anything runs the long tests.
	longTestsEnv = "TENANTD_LONG_TESTS"

	bigTenants = 100_000
	// heapBound is the most heap the export may use. Its CSV is about
	// 60 MB: an export that held it (or its lines) in memory would not fit.
	heapBound = 24 << 20
	// rssBound is the most the whole test process may hold in RAM during
	// the export (about 35 MiB measured, 70 MiB under the race detector).
	rssBound = 128 << 20
)

// TestExport100kTenantsBoundedMemory exports a period of 100,000 tenants
// (about 410,000 lines) and proves the export streams: the Go heap, sampled
// every few milliseconds while it runs, stays under heapBound. It logs the
// peak heap and the process's peak RSS (VmHWM, reset before the export where
// the kernel allows). Not parallel, so no other test of the package runs
// meanwhile and the numbers are the export's own. It takes over a minute:
// make test skips it, make test-long (in CI) runs it.
func TestExport100kTenantsBoundedMemory(t *testing.T) {
	if os.Getenv(longTestsEnv) == "" {
		t.Skip("a long test: set " + longTestsEnv + "=1 to run it (make test-long)")
	}
	x := newExportDB(t)
	ctx := t.Context()
	start := time.Now()
	// Bulk fixtures as the superuser of this test's own database: one
	// statement each, row-level security bypassed.
	err := x.super.Unscoped(ctx).Exec(`
		INSERT INTO tenants (id, slug, name, plan, created_at, updated_at)
		SELECT ('01900000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
		       'tenant-' || lpad(g::text, 6, '0'), 'Tenant ' || g,
		       (ARRAY['free', 'pro', 'enterprise'])[1 + g % 3],
		       timestamptz '2026-08-01 00:00:00+00', timestamptz '2026-08-01 00:00:00+00'
		FROM generate_series(1, ?) g`, bigTenants).Error
	if err != nil {
		t.Fatalf("insert tenants: %v", err)
	}
	err = x.super.Unscoped(ctx).Exec(`
		INSERT INTO usage_counters (tenant_id, meter, currency, hour, billing_period, quantity)
		SELECT t.id, m.meter, m.currency,
		       timestamptz '2026-09-01 00:00:00+00' + (abs(hashtext(t.slug)) % 700) * interval '1 hour',
		       '2026-09', abs(hashtext(t.slug || m.meter || m.currency)) % m.scale
		FROM tenants t
		CROSS JOIN (VALUES ('api_requests', '', 8000000), ('orders_created', '', 20000),
		                   ('payment_volume', 'EUR', 200000000), ('active_products', '', 15000)) m(meter, currency, scale)
		UNION ALL
		SELECT t.id, 'payment_volume', 'USD', timestamptz '2026-09-02 00:00:00+00', '2026-09', 12345
		FROM tenants t WHERE right(t.slug, 1) = '7'`).Error
	if err != nil {
		t.Fatalf("insert usage: %v", err)
	}
	if err := x.super.Unscoped(ctx).Exec("ANALYZE tenants; ANALYZE usage_counters").Error; err != nil {
		t.Fatalf("analyze: %v", err)
	}
	t.Logf("fixtures: %d tenants with usage in %v", bigTenants, time.Since(start).Round(time.Millisecond))

	// The first export (CSV) also closes the period: computing and storing
	// its lines happens in the database, in one INSERT … SELECT.
	e := billing.NewExporter(x.app)
	for _, f := range []billing.Format{billing.FormatCSV, billing.FormatJSONL} {
		t.Run(string(f), func(t *testing.T) {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			rssReset := resetPeakRSS(t)
			var peakHeap atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				var ms runtime.MemStats
				tick := time.NewTicker(2 * time.Millisecond)
				defer tick.Stop()
				for {
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peakHeap.Load() {
						peakHeap.Store(ms.HeapInuse)
					}
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			})

			// Keep the first and last lines and hash everything: proof the
			// lines went through, without keeping them.
			var head, tail lineTap
			h := sha256.New()
			var tenants, calls int64
			start := time.Now()
			got, err := e.Issue(ctx, "2026-09", f, "test", io.MultiWriter(h, &head, &tail), func(p billing.Progress) {
				calls++
				tenants = p.Tenants
			})
			elapsed := time.Since(start)
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatalf("export: %v", err)
			}

			wantRows := int64(bigTenants*4 + bigTenants/10)
			if wantClosed := f == billing.FormatCSV; got.ClosedPeriod != wantClosed {
				t.Errorf("got ClosedPeriod %v, want %v", got.ClosedPeriod, wantClosed)
			}
			if got.Rows != wantRows {
				t.Errorf("got %d lines, want %d (4 per tenant and a second payment currency for every tenth)", got.Rows, wantRows)
			}
			if sum := hex.EncodeToString(h.Sum(nil)); sum != got.SHA256 {
				t.Errorf("got sha256 %s of the bytes, want the recorded %s", sum, got.SHA256)
			}
			if tenants != bigTenants || calls < bigTenants {
				t.Errorf("progress: got %d tenants in %d reports, want %d tenants, one report each", tenants, calls, bigTenants)
			}
			first, last := head.first(), tail.last
			if !strings.Contains(first, "tenant-000001") || !strings.Contains(last, "tenant-100000") {
				t.Errorf("got first line %q and last %q, want tenant-000001 first and tenant-100000 last", first, last)
			}
			peak := peakHeap.Load()
			hwm := peakRSS()
			t.Logf("%s: %d lines, %.1f MB in %v; Go heap in use: %.1f MiB before, peak %.1f MiB; process peak RSS (VmHWM) %s",
				f, got.Rows, float64(got.Bytes)/1e6, elapsed.Round(time.Millisecond),
				float64(before.HeapInuse)/(1<<20), float64(peak)/(1<<20), mib(hwm))
			if peak > heapBound {
				t.Errorf("got a peak Go heap of %.1f MiB, want under %d MiB: the export must stream", float64(peak)/(1<<20), heapBound>>20)
			}
			if rssReset && hwm > rssBound {
				t.Errorf("got a peak RSS of %s, want under %d MiB", mib(hwm), rssBound>>20)
			}
			if got.Bytes < 2*heapBound {
				t.Errorf("got %d bytes, want more than twice the heap bound for the bound to prove streaming", got.Bytes)
			}
		})
	}
}

// lineTap remembers the first and the last line written through it.
type lineTap struct {
	head []byte
	last string
	part []byte
}

func (l *lineTap) Write(p []byte) (int, error) {
	if len(l.head) < 512 {
		l.head = append(l.head, p[:min(len(p), 512-len(l.head))]...)
	}
	// The last complete line: carry the partial tail across writes.
	data := p
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		prev := data[:i]
		if j := bytes.LastIndexByte(prev, '\n'); j >= 0 {
			l.last = string(prev[j+1:])
		} else {
			l.last = string(append(l.part, prev...))
		}
		l.part = append(l.part[:0], data[i+1:]...)
	} else {
		l.part = append(l.part, data...)
	}
	return len(p), nil
}

// first returns the first line after a CSV header, or the first line.
func (l *lineTap) first() string {
	lines := strings.SplitN(string(l.head), "\n", 3)
	if strings.HasPrefix(lines[0], "period,") && len(lines) > 1 {
		return lines[1]
	}
	return lines[0]
}

// resetPeakRSS resets the kernel's peak RSS of this process (VmHWM) where
// it may (Linux, writing 5 to /proc/self/clear_refs), and says whether it
// did.
func resetPeakRSS(t *testing.T) bool {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Logf("cannot reset VmHWM (%v): the peak RSS below is since the process started, and not checked", err)
		return false
	}
	return true
}

// peakRSS reads VmHWM from /proc/self/status, in bytes (-1 if unknown).
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb << 10
				}
			}
		}
	}
	return -1
}

func mib(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}
