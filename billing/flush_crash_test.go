package billing_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// crashEnv, when set in the environment, makes the test binary a drainer of
// the usage an earlier release left in Redis that kills itself (SIGKILL) at
// the step it names; see init.
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
	c := billing.NewCounter(redis.NewClient(opts), d, testenv.Logger(), time.Now)
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
	fmt.Fprintln(os.Stderr, "drain finished without being killed:", billing.DrainLegacy(ctx, c))
	return 3
}

// legacyCount adds n to a usage hash of tenantID's hour in Redis, as a
// replica of the release before durable metering pushed its counts.
func legacyCount(t *testing.T, r *meterRig, tenantID string, hour time.Time, field string, n int64) {
	t.Helper()
	key := "usage:{" + tenantID + "}:" + hour.UTC().Format("2006010215")
	if err := r.rdb.HIncrBy(t.Context(), key, field, n).Err(); err != nil {
		t.Fatalf("seed %s: %v", key, err)
	}
}

// TestFlusherKilled kills a process draining the usage an earlier release
// left in Redis between its two steps (after taking the Redis hash, before
// the PostgreSQL commit; after the commit, before deleting the hash) and
// proves that the next drain neither loses nor doubles a count.
func TestFlusherKilled(t *testing.T) {
	for _, step := range []string{"after-rename", "after-commit"} {
		t.Run(step, func(t *testing.T) {
			r := newMeterRig(t)
			ctx := t.Context()
			id := testenv.NewTenant(t, testenv.WithPlan("free")).ID
			hour := time.Now().Add(-time.Hour)
			legacyCount(t, r, id.String(), hour, billing.MeterAPIRequests+"|", 41)
			legacyCount(t, r, id.String(), hour, billing.MeterPaymentVolume+"|EUR", 1999)

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+step, crashEnv+"_DB="+r.env.AppURL,
				crashEnv+"_REDIS="+r.env.RedisURL, crashEnv+"_TENANT="+id.String())
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("got drainer exit %v, want it killed; output:\n%s", err, out)
			}
			if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("got drainer exit %v, want SIGKILL; output:\n%s", err, out)
			}

			// What the dead drainer left behind.
			keys := r.redisKeys(t, id)
			if len(keys) != 1 || !strings.HasPrefix(keys[0], "usage-flushing:") {
				t.Fatalf("got Redis keys %v, want the one flushing key the drainer took", keys)
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

			// An older replica still running counts on meanwhile.
			legacyCount(t, r, id.String(), hour, billing.MeterAPIRequests+"|", 9)

			// The next drain, on another replica, finishes the job.
			next := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
			if err := billing.DrainLegacy(ctx, next); err != nil {
				t.Fatalf("drain after the kill: %v", err)
			}
			usage := r.usage(t, id)
			if got := usage[billing.MeterKey{Meter: billing.MeterAPIRequests}]; got != 50 {
				t.Errorf("got api_requests %d, want 41 + 9 = 50", got)
			}
			if got := usage[billing.MeterKey{Meter: billing.MeterPaymentVolume, Currency: "EUR"}]; got != 1999 {
				t.Errorf("got payment_volume EUR %d, want 1999", got)
			}
			if keys := r.redisKeys(t, id); len(keys) > 0 {
				t.Errorf("got Redis keys %v after the drain, want none", keys)
			}
			// Draining again changes nothing.
			if err := billing.DrainLegacy(ctx, next); err != nil {
				t.Fatalf("drain again: %v", err)
			}
			if got := r.requests(t, id); got != 50 {
				t.Errorf("after another drain: got api_requests %d, want 50", got)
			}
		})
	}
}

// TestDrainLegacy moves what an earlier release left in Redis, the current
// hour's hash included, into the hours it was counted in, and a Counter's
// Run does it when it starts.
func TestDrainLegacy(t *testing.T) {
	r := newMeterRig(t)
	ctx := t.Context()
	id := testenv.NewTenant(t, testenv.WithPlan("free")).ID
	now := time.Now().UTC()
	legacyCount(t, r, id.String(), now.Add(-time.Hour), billing.MeterAPIRequests+"|", 3)
	legacyCount(t, r, id.String(), now, billing.MeterAPIRequests+"|", 4)
	// Not a usage key of the old format: left alone.
	other := "usage:{" + id.String() + "}:notanhour"
	if err := r.rdb.Set(ctx, other, "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}

	counter := billing.NewCounter(r.rdb, r.app, r.log, time.Now)
	runMeterCounter(t, counter)
	hours := func() map[string]int64 {
		type row struct {
			Hour     time.Time
			Quantity int64
		}
		rows := testenv.Query[[]row](t, r.app, id, "SELECT hour, quantity FROM usage_counters WHERE meter = 'api_requests'")
		out := map[string]int64{}
		for _, row := range rows {
			out[row.Hour.UTC().Format("15")] = row.Quantity
		}
		return out
	}
	want := fmt.Sprint(map[string]int64{now.Add(-time.Hour).Format("15"): 3, now.Format("15"): 4})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) { return fmt.Sprint(hours()) == want, "the drain at start" })
	if err := billing.DrainLegacy(ctx, counter); err != nil {
		t.Fatalf("drain again: %v", err)
	}
	if got := fmt.Sprint(hours()); got != want {
		t.Errorf("after draining again: got %s, want %s", got, want)
	}
	if keys := r.redisKeys(t, id); len(keys) != 1 || keys[0] != other {
		t.Errorf("got Redis keys %v, want only %s, which is no usage hash", keys, other)
	}
}
