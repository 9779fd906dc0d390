package webhooks_test

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tenantd/tenantd/webhooks"
)

func itoa(n int) string { return strconv.Itoa(n) }

func testLogger() *slog.Logger {
	if os.Getenv("TESTENV_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithCancel(context.Background())
}

func decodeSecret(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.TrimPrefix(s, webhooks.SecretPrefix))
}
