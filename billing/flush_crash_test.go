package billing_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/db"
)

// crashEnv, when set in the environment, makes the test binary a flusher
// that kills itself (SIGKILL) at the step it names; see init.
const crashEnv = "BILLING_TEST_KILLED_FLUSHER"

// init turns the test binary into the flusher that TestFlusherKilled kills,
// before TestMain sets up anything.
func init() {
	if step := os.Getenv(crashEnv); step != "" {
		os.Exit(runKilledFlusher(step))
	}
}

// runKilledFlusher flushes the database and Redis the parent test named,
// and kills its own process at step (after-rename, after-commit) of the
// parent's tenant. It returns only if it was not killed.
func runKilledFlusher(step string) int {
	ctx := context.Background()
	d, err := db.Open(ctx, os.Getenv(crashEnv+"_DB"), db.Options{MaxConns: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open database:", err)
		return 2
	}
	opts, err := redis.ParseURL(os.Getenv(crashEnv + "_REDIS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "redis url:", err)
		return 2
	}
	tenant := os.Getenv(crashEnv + "_TENANT")
	c := billing.NewCounter(redis.NewClient(opts), d, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	die := func(key string) error {
		if strings.Contains(key, tenant) {
			if err := syscall.Kill(os.Getpid(), syscall.SIGKILL); err != nil {
				fmt.Fprintln(os.Stderr, "kill:", err)
				os.Exit(2)
			}
			select {} // the signal is on its way
		}
		return nil
	}
	switch step {
	case "after-rename":
		billing.SetFlushHooks(c, die, nil)
	case "after-commit":
		billing.SetFlushHooks(c, nil, die)
	default:
		fmt.Fprintln(os.Stderr, "unknown step", step)
		return 2
	}
	fmt.Fprintln(os.Stderr, "flusher finished without being killed:", c.Flush(ctx))
	return 3
}

// TestFlusherKilled kills a flusher process between its two steps (after
// taking the Redis hash, before the PostgreSQL commit; after the commit,
// before deleting the hash) and proves that the next flush neither loses
// nor doubles a count.
func TestFlusherKilled(t *testing.T) {
	for _, step := range []string{"after-rename", "after-commit"} {
		t.Run(step, func(t *testing.T) {
			r := newMeterRig(t)
			ctx := t.Context()
			id := r.tenant(t, "free")
			counter := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
			counter.Count(ctx, id, billing.MeterAPIRequests, "", 41)
			counter.Count(ctx, id, billing.MeterPaymentVolume, "EUR", 1999)
			if err := billing.Push(ctx, counter); err != nil {
				t.Fatalf("push: %v", err)
			}

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+step, crashEnv+"_DB="+r.env.AppURL,
				crashEnv+"_REDIS="+r.env.RedisURL, crashEnv+"_TENANT="+id.String())
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("got flusher exit %v, want it killed; output:\n%s", err, out)
			}
			if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("got flusher exit %v, want SIGKILL; output:\n%s", err, out)
			}

			// What the dead flusher left behind.
			keys := r.redisKeys(t, id)
			if len(keys) != 1 || !strings.HasPrefix(keys[0], "usage-flushing:") {
				t.Fatalf("got Redis keys %v, want the one flushing key the flusher took", keys)
			}
			var recorded int64
			if err := r.app.Unscoped(ctx).Raw("SELECT count(*) FROM usage_flushes WHERE flush_key = ?", keys[0]).Scan(&recorded).Error; err != nil {
				t.Fatalf("read usage_flushes: %v", err)
			}
			wantCommitted := step == "after-commit"
			if got := r.requests(t, id); (got == 41) != wantCommitted || (got != 0 && got != 41) {
				t.Fatalf("got api_requests %d in PostgreSQL after the kill %s, want %v", got, step, map[bool]int{true: 41, false: 0}[wantCommitted])
			}
			if (recorded == 1) != wantCommitted {
				t.Fatalf("got %d usage_flushes rows for %s, want committed=%v", recorded, keys[0], wantCommitted)
			}

			// Counting goes on meanwhile.
			counter.Count(ctx, id, billing.MeterAPIRequests, "", 9)
			if err := billing.Push(ctx, counter); err != nil {
				t.Fatalf("push: %v", err)
			}

			// The next flusher, on another replica, finishes the job.
			next := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
			if err := next.Flush(ctx); err != nil {
				t.Fatalf("flush after the kill: %v", err)
			}
			usage := r.usage(t, id)
			if got := usage[billing.MeterKey{Meter: billing.MeterAPIRequests}]; got != 50 {
				t.Errorf("got api_requests %d, want 41 + 9 = 50", got)
			}
			if got := usage[billing.MeterKey{Meter: billing.MeterPaymentVolume, Currency: "EUR"}]; got != 1999 {
				t.Errorf("got payment_volume EUR %d, want 1999", got)
			}
			if keys := r.redisKeys(t, id); len(keys) > 0 {
				t.Errorf("got Redis keys %v after the flush, want none", keys)
			}
			// Flushing again changes nothing.
			if err := next.Flush(ctx); err != nil {
				t.Fatalf("flush again: %v", err)
			}
			if got := r.requests(t, id); got != 50 {
				t.Errorf("after another flush: got api_requests %d, want 50", got)
			}
		})
	}
}

// TestFlushPastHoursOnly leaves the current hour in Redis for the periodic
// flush, and takes it on an explicit Flush.
func TestFlushPastHoursOnly(t *testing.T) {
	r := newMeterRig(t)
	ctx := t.Context()
	id := r.tenant(t, "free")
	clock := &meterClock{now: time.Date(2031, 7, 1, 9, 59, 0, 0, time.UTC)}
	counter := billing.NewCounter(r.rdb, r.app, r.log, clock.Now)
	counter.Count(ctx, id, billing.MeterAPIRequests, "", 3)
	clock.Set(time.Date(2031, 7, 1, 10, 5, 0, 0, time.UTC))
	counter.Count(ctx, id, billing.MeterAPIRequests, "", 4)
	if err := billing.Push(ctx, counter); err != nil {
		t.Fatalf("push: %v", err)
	}
	if err := billing.FlushPast(ctx, counter); err != nil {
		t.Fatalf("flush past hours: %v", err)
	}
	hours := func() map[string]int64 {
		var rows []struct {
			Hour     time.Time
			Quantity int64
		}
		if err := r.app.WithTenant(ctx, id, func(tx *gorm.DB) error {
			return tx.Raw("SELECT hour, quantity FROM usage_counters WHERE meter = 'api_requests'").Scan(&rows).Error
		}); err != nil {
			t.Fatalf("read counters: %v", err)
		}
		out := map[string]int64{}
		for _, row := range rows {
			out[row.Hour.UTC().Format("15:04")] = row.Quantity
		}
		return out
	}
	if got := hours(); fmt.Sprint(got) != "map[09:00:3]" {
		t.Errorf("after the periodic flush: got %v, want only the past hour 09:00 = 3", got)
	}
	if err := counter.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if got := hours(); fmt.Sprint(got) != "map[09:00:3 10:00:4]" {
		t.Errorf("after Flush: got %v, want 09:00 = 3 and 10:00 = 4", got)
	}
}
