package billing

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/internal/testenv"
)

// Hooks into a Counter for the external tests.

// SetFlushHooks makes c's flusher call afterRename once it has renamed a
// usage key to its flushing key, and afterCommit once it has committed a
// flushing key's counts, before deleting the key; an error stops the flush
// there. Either may be nil.
func SetFlushHooks(c *Counter, afterRename, afterCommit func(flushingKey string) error) {
	c.hooks = flushHooks{afterRename: afterRename, afterCommit: afterCommit}
}

// Push sends c's accumulator to Redis now, as Run does every 100ms.
func Push(ctx context.Context, c *Counter) error { return c.push(ctx, true) }

// FlushPast flushes the past hours from Redis, as Run does every 30s.
func FlushPast(ctx context.Context, c *Counter) error { return c.flushRedis(ctx, false) }

// CountsInPostgres reports whether c is writing counts to PostgreSQL
// because Redis failed.
func CountsInPostgres(c *Counter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
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
		{"usage:{" + id.String() + "}:2030031510", usagePrefix, true, ""},
		{"usage-flushing:{" + id.String() + "}:2030031510:abc", flushingPrefix, true, "abc"},
		{"usage:{" + id.String() + "}:2030031510:", usagePrefix, false, ""},
		{"usage:{" + id.String() + "}:20300315", usagePrefix, false, ""},
		{"usage:{not-a-uuid-not-a-uuid-not-a-uuid-xx}:2030031510", usagePrefix, false, ""},
		{"usage:" + id.String() + ":2030031510", usagePrefix, false, ""},
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
	if k := usageKey(id, time.Date(2030, 3, 15, 10, 0, 0, 0, time.UTC).Unix()/3600); k != "usage:{"+id.String()+"}:2030031510" {
		t.Errorf("got usage key %s", k)
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

// TestPushIdempotent pushes one batch again and again, as retries after a
// lost reply do: Redis counts it once, and a batch retried after a later
// one of its tenant does not count either.
func TestPushIdempotent(t *testing.T) {
	ctx := t.Context()
	rdb := testenv.Get(t).RedisClient(t)
	c := NewCounter(rdb, nil, nil, time.Now)
	tenantID := uuid.New()
	key := usageKey(tenantID, time.Now().Unix()/3600)
	t.Cleanup(func() {
		if err := rdb.Del(context.Background(), key, seqPrefix+"{"+tenantID.String()+"}:"+c.replica).Err(); err != nil {
			t.Errorf("clean up: %v", err)
		}
	})
	push := func(bs []*batch) {
		t.Helper()
		if failed, unknown, err := c.send(ctx, bs); err != nil || len(failed)+len(unknown) > 0 {
			t.Fatalf("send: %v (%d failed, %d unknown)", err, len(failed), len(unknown))
		}
	}
	counted := func() int64 {
		t.Helper()
		n, err := rdb.HGet(ctx, key, MeterAPIRequests+"|").Int64()
		if err != nil {
			t.Fatalf("read count: %v", err)
		}
		return n
	}
	c.Count(ctx, tenantID, MeterAPIRequests, "", 7)
	first := c.drain(true)
	for range 3 {
		push(first)
	}
	if got := counted(); got != 7 {
		t.Fatalf("after pushing one batch of 7 three times: got %d, want 7", got)
	}
	c.Count(ctx, tenantID, MeterAPIRequests, "", 5)
	push(c.drain(true))
	push(first)
	if got := counted(); got != 12 {
		t.Errorf("after a second batch of 5 and the first again: got %d, want 12", got)
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl <= 0 || ttl > usageKeyTTL {
		t.Errorf("got TTL %s, want up to %s", ttl, usageKeyTTL)
	}
}

func TestNotSent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"client closed", redis.ErrClosed, true},
		{"redis error reply", redisErrorReply(t), true},
		{"connection reset after write", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false},
		{"EOF", io.EOF, false},
		{"deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := notSent(tt.err); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// redisErrorReply returns an error reply from the package's Redis.
func redisErrorReply(t *testing.T) error {
	t.Helper()
	rdb := testenv.Get(t).RedisClient(t)
	err := rdb.Do(t.Context(), "NO-SUCH-COMMAND").Err()
	if err == nil {
		t.Fatal("got no error for an unknown command")
	}
	return err
}
