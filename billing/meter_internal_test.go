package billing

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Hooks into a Counter for the external tests.

// SetFlushHooks makes c's legacy drain call afterRename once it has renamed
// a usage key to its flushing key, and afterCommit once it has committed a
// flushing key's counts, before deleting the key; an error stops the drain
// there. Either may be nil.
func SetFlushHooks(c *Counter, afterRename, afterCommit func(flushingKey string) error) {
	c.hooks.afterRename, c.hooks.afterCommit = afterRename, afterCommit
}

// DrainLegacy moves usage an earlier release left in Redis into
// usage_counters, as Run does at start and every 10 minutes.
func DrainLegacy(ctx context.Context, c *Counter) error { return c.drainLegacy(ctx) }

// FlushOnce writes c's pending flushes and its accumulator once, as Run
// does every second, without Flush's retries.
func FlushOnce(ctx context.Context, c *Counter) error { return c.flushOnce(ctx) }

// Pending returns how many flushes c holds that are not known to be in
// usage_counters.
func Pending(c *Counter) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

func TestAttribute(t *testing.T) {
	hour := func(s string) time.Time { return time.Date(2030, mustMonth(t, s), 15, 10, 0, 0, 0, time.UTC) }
	tests := []struct {
		name   string
		closed []string
		hour   time.Time
		want   string
	}{
		{"open month", nil, hour("2030-03"), "2030-03"},
		{"other months closed", []string{"2030-01", "2030-02"}, hour("2030-03"), "2030-03"},
		{"closed month goes after the latest closed", []string{"2030-02", "2030-03"}, hour("2030-02"), "2030-04"},
		{"closed, later months closed too", []string{"2030-02", "2030-03", "2030-05"}, hour("2030-02"), "2030-06"},
		{"year boundary", []string{"2030-12"}, time.Date(2030, 12, 31, 23, 0, 0, 0, time.UTC), "2031-01"},
		{"open month before a closed one", []string{"2030-04"}, hour("2030-03"), "2030-03"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := periods{closed: map[string]bool{}}
			for _, c := range tt.closed {
				p.closed[c] = true
				p.latest = max(p.latest, c)
			}
			if got := p.attribute(tt.hour); got != tt.want {
				t.Errorf("got period %s, want %s", got, tt.want)
			}
		})
	}
}

func mustMonth(t *testing.T, period string) time.Month {
	t.Helper()
	start, err := PeriodStart(period)
	if err != nil {
		t.Fatal(err)
	}
	return start.Month()
}

func TestParseKey(t *testing.T) {
	id := uuid.MustParse("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
	tests := []struct {
		key, prefix string
		ok          bool
		rest        string
	}{
		{"usage:{" + id.String() + "}:2030031510", legacyUsagePrefix, true, ""},
		{"usage-flushing:{" + id.String() + "}:2030031510:abc", legacyFlushingPrefix, true, "abc"},
		{"usage:{" + id.String() + "}:2030031510:", legacyUsagePrefix, false, ""},
		{"usage:{" + id.String() + "}:20300315", legacyUsagePrefix, false, ""},
		{"usage:{not-a-uuid-not-a-uuid-not-a-uuid-xx}:2030031510", legacyUsagePrefix, false, ""},
		{"usage:" + id.String() + ":2030031510", legacyUsagePrefix, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			gotID, hour, rest, ok := parseKey(tt.key, tt.prefix)
			if ok != tt.ok {
				t.Fatalf("got ok %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if gotID != id || !hour.Equal(time.Date(2030, 3, 15, 10, 0, 0, 0, time.UTC)) || rest != tt.rest {
				t.Errorf("got %s %s %q, want %s 2030-03-15T10 %q", gotID, hour, rest, id, tt.rest)
			}
		})
	}
}

func TestTrustFor(t *testing.T) {
	pl := &planLimits{meters: map[string]meterLimit{MeterAPIRequests: {included: 100_000, hard: true}}}
	pl.limit.Rate, pl.limit.Burst = 10, 20
	tests := []struct {
		used int64
		want time.Duration
	}{
		{0, maxUsageTTL},
		{99_000, 16_666_666_666 * time.Nanosecond}, // 1000 left at 30/s: half in 16.7s
		{99_400, 10 * time.Second},
		{99_990, minUsageTTL}, // 10 left: read again every second
		{100_000, minUsageTTL},
		{120_000, minUsageTTL},
	}
	for _, tt := range tests {
		if got := trustFor(pl, map[string]int64{MeterAPIRequests: tt.used}); (got - tt.want).Abs() > time.Microsecond {
			t.Errorf("used %d: got %s, want %s", tt.used, got, tt.want)
		}
	}
}
