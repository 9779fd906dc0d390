package apptest

import (
	"bytes"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// This file is the harness of the tests that run the real binary as a
// child process (the root package's shutdown, metering and CLI tests, the
// walk-throughs, the chaos suite): build it, find it an address, collect
// its output and wait until it is ready.

// SyncBuffer is an io.Writer safe for concurrent writers, such as a child
// process's output or a server's log, whose String is all written so far.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// BuildBinary builds tenantd from root, the module's root directory as
// seen from the test's package (go test runs a package's tests in its
// directory), into the test's temporary directory and returns its path.
func BuildBinary(t testing.TB, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tenantd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago,
// for a child process to listen on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitReady polls base+"/readyz" until it answers 200, and fails the test
// with logs() when within has passed or when exited, the channel that
// receives the process's exit, says it ended first (the exit is put back
// for whoever waits for it next; exited must have room for it).
func WaitReady(t testing.TB, base string, within time.Duration, exited chan error, logs func() string) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(within)
	for {
		if resp, err := hc.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("%s exited before it was ready: %v\n%s", base, err, logs())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v\n%s", base, within, logs())
		}
	}
}
