package db_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/internal/testenv"
)

// openApp opens a runtime-role pool with opts, closed when the test ends.
func openApp(t testing.TB, opts db.Options) *db.DB {
	t.Helper()
	d, err := db.Open(t.Context(), testenv.Get(t).AppURL, opts)
	if err != nil {
		t.Fatalf("open app database: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// answer writes err as httpx does in a handler whose request has context
// ctx, and returns the response.
func answer(ctx context.Context, err error) *httptest.ResponseRecorder {
	gin.SetMode(gin.TestMode)
	rec := httptest.NewRecorder()
	c, _ := gin.CreateTestContext(rec)
	c.Request = httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/products", nil)
	httpx.Error(c, err)
	return rec
}

// wantUnavailable fails t unless err is answered 503 service_unavailable
// with Retry-After.
func wantUnavailable(t testing.TB, err error) {
	t.Helper()
	rec := answer(context.Background(), err)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("error %v answered %d, want 503", err, rec.Code)
	}
	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("got Retry-After %q, want 1", got)
	}
	if p := httpx.ProblemFor(err); p.Code != fault.Unavailable {
		t.Errorf("got problem code %s, want %s", p.Code, fault.Unavailable)
	}
}

// retriesCounted reads tenantd_db_tx_retries_total{code} from m's registry.
func retriesCounted(t testing.TB, m *obs.Metrics, code string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tenantd_db_tx_retries_total" {
			continue
		}
		for _, c := range mf.GetMetric() {
			for _, l := range c.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return c.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("tenantd_db_tx_retries_total{code=%q} not exported", code)
	return 0
}

// TestTimeoutOptions proves Options' timeouts become the settings of every
// connection of the pool, that zero leaves the server's (off), and that the
// LongRunning view has no statement timeout but keeps the others.
func TestTimeoutOptions(t *testing.T) {
	t.Parallel()
	tenantID := testenv.NewTenant(t).ID
	timeouts := db.Options{MaxConns: 2, LockTimeout: 1500 * time.Millisecond, StatementTimeout: 10 * time.Second, IdleInTxTimeout: 30 * time.Second}
	withTimeouts := openApp(t, timeouts)
	tests := []struct {
		name                 string
		d                    *db.DB
		lock, stmt, idleInTx string
	}{
		{"runtime pool", withTimeouts, "1500ms", "10s", "30s"},
		{"long-running view", withTimeouts.LongRunning(), "1500ms", "0", "30s"},
		{"no timeouts", openApp(t, db.Options{MaxConns: 2}), "0", "0", "0"},
		{"sub-millisecond rounds up", openApp(t, db.Options{MaxConns: 1, LockTimeout: 100 * time.Microsecond}), "1ms", "0", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every connection, not just the first: hold both at once.
			var wg sync.WaitGroup
			hold := make(chan struct{})
			for range 2 {
				wg.Go(func() {
					var got struct{ Lock, Stmt, IdleInTx string }
					err := tt.d.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error {
						err := tx.Raw(`SELECT current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS stmt,
							current_setting('idle_in_transaction_session_timeout') AS idle_in_tx`).Scan(&got).Error
						<-hold
						return err
					})
					if err != nil {
						t.Errorf("read settings: %v", err)
						return
					}
					if got.Lock != tt.lock || got.Stmt != tt.stmt || got.IdleInTx != tt.idleInTx {
						t.Errorf("got lock_timeout %q, statement_timeout %q, idle_in_transaction_session_timeout %q; want %q, %q, %q",
							got.Lock, got.Stmt, got.IdleInTx, tt.lock, tt.stmt, tt.idleInTx)
					}
				})
			}
			time.AfterFunc(100*time.Millisecond, func() { close(hold) })
			wg.Wait()
		})
	}
}

// TestLockTimeout holds a row lock on one connection and proves that a
// second transaction wanting the row fails fast with lock_not_available
// (55P03), is not retried, and is answered 503 with Retry-After.
func TestLockTimeout(t *testing.T) {
	t.Parallel()
	owner, tenantID, ids := tenantProducts(t, "LOCKED-1")
	id := ids[0]
	app := openApp(t, db.Options{MaxConns: 4, LockTimeout: 200 * time.Millisecond, StatementTimeout: 10 * time.Second})
	var retries int
	app.SetOnRetry(func(string) { retries++ })

	locked, release := make(chan struct{}), make(chan struct{})
	holderDone := make(chan error, 1)
	go func() {
		holderDone <- owner.WithTenant(context.Background(), tenantID, func(tx *gorm.DB) error {
			if err := tx.Exec("SELECT 1 FROM products WHERE id = ? FOR UPDATE", id).Error; err != nil {
				close(locked)
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	t.Cleanup(func() {
		close(release)
		if err := <-holderDone; err != nil {
			t.Errorf("lock holder: %v", err)
		}
	})

	start := time.Now()
	calls := 0
	err := app.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error {
		calls++
		return tx.Exec("UPDATE products SET name = 'renamed' WHERE id = ?", id).Error
	})
	elapsed := time.Since(start)
	wantSQLState(t, err, "55P03")
	if elapsed > 1500*time.Millisecond {
		t.Errorf("got the lock timeout after %v, want it after about 200ms", elapsed)
	}
	if calls != 1 || retries != 0 {
		t.Errorf("got %d calls and %d retries, want 1 and 0: a lock timeout is not retried", calls, retries)
	}
	wantUnavailable(t, err)
}

// TestStatementTimeout proves a statement running past the pool's
// statement_timeout is cancelled (57014) and answered 503 with Retry-After,
// while the LongRunning view lets it finish.
func TestStatementTimeout(t *testing.T) {
	t.Parallel()
	app := openApp(t, db.Options{MaxConns: 2, LockTimeout: 50 * time.Millisecond, StatementTimeout: 100 * time.Millisecond})

	start := time.Now()
	err := app.Unscoped(t.Context()).Exec("SELECT pg_sleep(5)").Error
	wantSQLState(t, err, "57014")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("got the statement timeout after %v, want it after about 100ms", elapsed)
	}
	wantUnavailable(t, err)

	if err := app.LongRunning().Unscoped(t.Context()).Exec("SELECT pg_sleep(0.3)").Error; err != nil {
		t.Fatalf("long-running statement: got %v, want it to finish", err)
	}
}

// TestIdleInTransactionTimeout proves a transaction left idle past the
// pool's idle_in_transaction_session_timeout is ended by the server and
// answered 503 with Retry-After, and that the pool recovers.
func TestIdleInTransactionTimeout(t *testing.T) {
	t.Parallel()
	tenantID := testenv.NewTenant(t).ID
	app := openApp(t, db.Options{MaxConns: 1, IdleInTxTimeout: 100 * time.Millisecond})

	err := app.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT 1").Error; err != nil {
			return err
		}
		time.Sleep(600 * time.Millisecond) // a slow call out, inside the transaction
		return tx.Exec("SELECT 1").Error
	})
	if err == nil {
		t.Fatal("got no error, want the idle transaction ended")
	}
	t.Logf("idle transaction ended with: %v", err)
	wantUnavailable(t, err)

	if err := app.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error { return tx.Exec("SELECT 1").Error }); err != nil {
		t.Fatalf("next transaction: got %v, want the pool to have recovered", err)
	}
}

// TestClientCancelIsNotAServerError proves that a transaction cut short by
// the client going away (its request context cancelled) is not retried and
// is answered 499 client_closed_request, not 500 or 503.
func TestClientCancelIsNotAServerError(t *testing.T) {
	t.Parallel()
	tenantID := testenv.NewTenant(t).ID
	app := openApp(t, db.Options{MaxConns: 2, StatementTimeout: 10 * time.Second})

	ctx, hangUp := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, hangUp)
	calls := 0
	err := app.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
		calls++
		return tx.Exec("SELECT pg_sleep(5)").Error
	})
	if err == nil {
		t.Fatal("got no error, want the cancelled statement's")
	}
	t.Logf("cancelled transaction ended with: %v", err)
	if calls != 1 {
		t.Errorf("got %d calls, want 1", calls)
	}
	rec := answer(ctx, err)
	if rec.Code != httpx.StatusClientClosedRequest {
		t.Fatalf("got status %d, want %d", rec.Code, httpx.StatusClientClosedRequest)
	}
}

// TestDeadlockRetried provokes a real deadlock between two WithTenant
// transactions that lock two rows in opposite orders. PostgreSQL aborts one
// of them (40P01); WithTenant runs it again, so both succeed, each
// committing once (every row is updated exactly twice), and every retry is
// counted in tenantd_db_tx_retries_total{code="40P01"}.
func TestDeadlockRetried(t *testing.T) {
	t.Parallel()
	owner, tenantID, ids := tenantProducts(t, "DL-A", "DL-B")
	// lock_timeout above deadlock_timeout (1s), as in production.
	app := openApp(t, db.Options{MaxConns: 4, LockTimeout: 5 * time.Second, StatementTimeout: 10 * time.Second})
	m := obs.NewMetrics()
	app.SetOnRetry(m.CountTxRetry)

	type txName struct{}
	var mu sync.Mutex
	afters := map[string][]bool{}
	app.SetBeforeCommit(func(ctx context.Context, _ *gorm.DB, _ uuid.UUID) (func(bool), error) {
		name := ctx.Value(txName{}).(string)
		return func(committed bool) {
			mu.Lock()
			defer mu.Unlock()
			afters[name] = append(afters[name], committed)
		}, nil
	})

	var bothLocked sync.WaitGroup
	bothLocked.Add(2)
	attempts := map[string]int{}
	run := func(name string, first, second uuid.UUID) error {
		ctx := context.WithValue(t.Context(), txName{}, name)
		n := 0
		err := app.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
			n++
			if err := tx.Exec("UPDATE products SET stock_on_hand = stock_on_hand + 1 WHERE id = ?", first).Error; err != nil {
				return err
			}
			if n == 1 {
				bothLocked.Done()
				bothLocked.Wait() // each holds its first row: the second update deadlocks
			}
			return tx.Exec("UPDATE products SET stock_on_hand = stock_on_hand + 1 WHERE id = ?", second).Error
		})
		mu.Lock()
		attempts[name] = n
		mu.Unlock()
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = run("a-then-b", ids[0], ids[1]) })
	wg.Go(func() { errs[1] = run("b-then-a", ids[1], ids[0]) })
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("transaction %d: got %v, want it to succeed after the retry", i, err)
		}
	}
	// Usually one retry; a retry that takes its first row again before the
	// winner took it deadlocks once more (and is retried again).
	retried := attempts["a-then-b"] + attempts["b-then-a"] - 2
	if retried < 1 {
		t.Errorf("got attempts %v, want one transaction run again", attempts)
	}
	if got := retriesCounted(t, m, "40P01"); got != float64(retried) {
		t.Errorf("got tenantd_db_tx_retries_total{code=\"40P01\"} %v, want %d (attempts %v)", got, retried, attempts)
	}
	// The aborted attempt failed inside fn, before the hook ran.
	for name := range attempts {
		if !slices.Equal(afters[name], []bool{true}) {
			t.Errorf("%s: after was told %v, want [true]", name, afters[name])
		}
	}
	var stock []int64
	err := owner.WithTenant(t.Context(), tenantID, func(tx *gorm.DB) error {
		return tx.Raw("SELECT stock_on_hand FROM products WHERE id IN ? ORDER BY sku", ids).Scan(&stock).Error
	})
	if err != nil {
		t.Fatalf("read stock: %v", err)
	}
	if !slices.Equal(stock, []int64{7, 7}) {
		t.Errorf("got stock %v, want [7 7]: each transaction committed exactly once", stock)
	}
}

// TestSerializationFailureAtCommitRetried makes two SERIALIZABLE
// transactions skew-write (each reads both rows and writes one), so that
// the one committing second fails at COMMIT (40001) after the BeforeCommit
// hook ran in it. WithTenant tells that attempt's after false before the
// retry runs the hook again (so the audit entry claimed in the failed
// attempt is free to be claimed again), and the retry commits.
func TestSerializationFailureAtCommitRetried(t *testing.T) {
	t.Parallel()
	_, tenantID, ids := tenantProducts(t, "SKEW-A", "SKEW-B")
	u, err := url.Parse(testenv.Get(t).AppURL)
	if err != nil {
		t.Fatalf("parse app url: %v", err)
	}
	q := u.Query()
	q.Set("default_transaction_isolation", "serializable")
	u.RawQuery = q.Encode()
	d, err := db.Open(t.Context(), u.String(), db.Options{MaxConns: 4, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open serializable pool: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	m := obs.NewMetrics()
	d.SetOnRetry(m.CountTxRetry)

	type txName struct{}
	var mu sync.Mutex
	happened := map[string][]string{}
	record := func(name, what string) {
		mu.Lock()
		defer mu.Unlock()
		happened[name] = append(happened[name], what)
	}
	firstCommitted := make(chan struct{})
	var once sync.Once
	d.SetBeforeCommit(func(ctx context.Context, _ *gorm.DB, _ uuid.UUID) (func(bool), error) {
		name := ctx.Value(txName{}).(string)
		mu.Lock()
		hooks := len(happened[name])
		mu.Unlock()
		if name == "second" && hooks == 0 {
			<-firstCommitted // commit after "first": this COMMIT fails
		}
		record(name, "hook")
		return func(committed bool) {
			record(name, "after:"+map[bool]string{true: "committed", false: "failed"}[committed])
			if committed && name == "first" {
				once.Do(func() { close(firstCommitted) })
			}
		}, nil
	})

	var bothRead, bothWrote sync.WaitGroup
	bothRead.Add(2)
	bothWrote.Add(2)
	run := func(name string, write uuid.UUID) error {
		ctx := context.WithValue(t.Context(), txName{}, name)
		n := 0
		return d.WithTenant(ctx, tenantID, func(tx *gorm.DB) error {
			n++
			var sum int64
			if err := tx.Raw("SELECT sum(stock_on_hand) FROM products WHERE id IN ?", ids).Scan(&sum).Error; err != nil {
				return err
			}
			if n == 1 {
				bothRead.Done()
				bothRead.Wait()
			}
			if err := tx.Exec("UPDATE products SET stock_on_hand = ? WHERE id = ?", sum, write).Error; err != nil {
				return err
			}
			if n == 1 {
				bothWrote.Done()
				bothWrote.Wait()
			}
			return nil
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = run("first", ids[0]) })
	wg.Go(func() { errs[1] = run("second", ids[1]) })
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("transaction %d: got %v, want it to succeed", i, err)
		}
	}
	if want := []string{"hook", "after:committed"}; !slices.Equal(happened["first"], want) {
		t.Errorf("first: got %v, want %v", happened["first"], want)
	}
	if want := []string{"hook", "after:failed", "hook", "after:committed"}; !slices.Equal(happened["second"], want) {
		t.Errorf("second: got %v, want %v: the failed attempt's after must run before the retry's hook", happened["second"], want)
	}
	if got := retriesCounted(t, m, "40001"); got != 1 {
		t.Errorf("got tenantd_db_tx_retries_total{code=\"40001\"} %v, want 1", got)
	}
}

// TestRetryBounds proves WithTenant gives up after three attempts (and the
// error is answered 503), never retries once ctx is done, retries
// WithPlatform too, and leaves other errors alone.
func TestRetryBounds(t *testing.T) {
	t.Parallel()
	tenantID := testenv.NewTenant(t).ID
	serialization := &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access"}
	errOther := errors.New("not a database error")

	tests := []struct {
		name        string
		platform    bool
		fn          func(cancel context.CancelFunc) error
		wantCalls   int
		wantRetries float64
		wantErr     error
		unavailable bool
	}{
		{name: "gives up after three attempts", fn: func(context.CancelFunc) error { return serialization },
			wantCalls: 3, wantRetries: 2, wantErr: serialization, unavailable: true},
		{name: "platform too", platform: true, fn: func(context.CancelFunc) error { return serialization },
			wantCalls: 3, wantRetries: 2, wantErr: serialization, unavailable: true},
		{name: "not once ctx is done", fn: func(cancel context.CancelFunc) error { cancel(); return serialization },
			wantCalls: 1, wantErr: context.Canceled},
		{name: "other errors", fn: func(context.CancelFunc) error { return errOther },
			wantCalls: 1, wantErr: errOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			app := openApp(t, db.Options{MaxConns: 1})
			m := obs.NewMetrics()
			app.SetOnRetry(m.CountTxRetry)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			calls := 0
			fn := func(*gorm.DB) error { calls++; return tt.fn(cancel) }
			var err error
			if tt.platform {
				err = app.WithPlatform(ctx, fn)
			} else {
				err = app.WithTenant(ctx, tenantID, fn)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Errorf("got %d calls, want %d", calls, tt.wantCalls)
			}
			if got := retriesCounted(t, m, "40001"); got != tt.wantRetries {
				t.Errorf("got %v retries counted, want %v", got, tt.wantRetries)
			}
			if tt.unavailable {
				wantUnavailable(t, err)
			}
		})
	}
}
