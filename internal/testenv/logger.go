package testenv

import (
	"io"
	"log/slog"
	"os"
)

// Logger returns a logger for the code under test: debug-level text on
// standard error when TESTENV_VERBOSE is set, and nothing otherwise.
func Logger() *slog.Logger {
	if os.Getenv("TESTENV_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
