package obs

import (
	"context"
	"testing"
	"time"
)

// TestSetupTracing: with an OTLP endpoint configured, the tracer provider
// is installed (the exporter connects lazily, so nothing needs to listen).
func TestSetupTracing(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_SERVICE_NAME", "tenantd-test")
	shutdown, err := SetupTracing(context.Background())
	if err != nil {
		t.Fatalf("SetupTracing: got %v, want nil", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Logf("shutdown (nothing listens on the endpoint): %v", err)
	}
}
