package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// A run is one invocation of `go test` (or of whatever starts the test
// binaries): its test packages share one PostgreSQL cluster and one Redis.
// Its directory, $TMPDIR/tenantd-testenv-<uid>/<key>, holds:
//
//	lock         exclusive while a package joins the run or the keeper leaves it
//	keeper.lock  held exclusively by the keeper for as long as it lives
//	holders.lock held shared by every package using the servers
//	state.json   the servers' URLs, written by the keeper once they answer
//	keeper.log   what the keeper said
//	redis-db-N.lock  held by the package using Redis database N
//
// The key is TESTENV_RUN when set, and otherwise the parent process of the
// test binary: `go test` runs every package's binary as its own child, so
// two `go test` at once on one machine get two runs (and two pairs of
// servers), and one `go test ./...` gets one.
type run struct {
	dir    string
	parent int // the process whose end ends the run, or 0
}

const runEnv = "TESTENV_RUN"

func currentRun() (run, error) {
	key, parent := os.Getenv(runEnv), 0
	if key == "" {
		parent = os.Getppid()
		key = "go-" + strconv.Itoa(parent)
	}
	if filepath.Base(key) != key || key == "." || key == ".." {
		return run{}, fmt.Errorf("%s=%q: want a plain name", runEnv, key)
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("tenantd-testenv-%d", os.Getuid()), key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return run{}, fmt.Errorf("run directory: %w", err)
	}
	return run{dir: dir, parent: parent}, nil
}

func (r run) path(name string) string { return filepath.Join(r.dir, name) }

// flock is an open file with a flock(2) lock on it, released by Close or
// when the process ends, however it ends.
type flock struct{ f *os.File }

// lockFile locks path (created if missing) with how (syscall.LOCK_EX or
// LOCK_SH, optionally |LOCK_NB). With LOCK_NB, ok is false when another
// process holds a conflicting lock.
func lockFile(path string, how int) (l *flock, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, false, nil
	}
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("flock %s: %w", path, err)
	}
	return &flock{f: f}, true, nil
}

// lockRun takes the run's lock. The keeper removes the run directory while
// holding it, so a lock taken on a file since removed is retried on the
// file now at the path.
func (r run) lock() (*flock, error) {
	for {
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return nil, fmt.Errorf("run directory: %w", err)
		}
		l, _, err := lockFile(r.path("lock"), syscall.LOCK_EX)
		if err != nil {
			return nil, err
		}
		held, err1 := l.f.Stat()
		now, err2 := os.Stat(r.path("lock"))
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return l, nil
		}
		l.Close()
	}
}

// Close releases the lock.
func (l *flock) Close() {
	if l != nil {
		l.f.Close()
	}
}

// free reports whether nobody holds a lock on path that conflicts with
// how (LOCK_EX: nobody holds any; LOCK_SH: nobody holds it exclusively).
func free(path string, how int) bool {
	l, ok, err := lockFile(path, how|syscall.LOCK_NB)
	if err != nil || !ok {
		return false
	}
	l.Close()
	return true
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
