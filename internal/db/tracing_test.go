package db_test

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestTracingSpans: with Options.Tracing every statement run within a
// span (a request's) gets a client span carrying the statement's text and
// never its bound values, which hold tenants' data. Not parallel: it sets the global tracer
// provider.
func TestTracingSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	env := testenv.Get(t)
	d, err := db.Open(t.Context(), env.AppURL, db.Options{MaxConns: 1, Tracing: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	const secret = "s3cret-tenant-value"
	// Statements are traced inside a request's (or a job's) span, as the
	// gin middleware opens one for every request.
	ctx, parent := otel.Tracer("test").Start(t.Context(), "request")
	var got string
	err = d.Unscoped(ctx).Raw("SELECT ?::text || '' AS v", secret).Scan(&got).Error
	parent.End()
	if err != nil || got != secret {
		t.Fatalf("query: got %q, %v", got, err)
	}

	found := false
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.String(), secret) {
				t.Errorf("span %q attribute %s carries a bound value: %s", s.Name(), a.Key, a.Value.String())
			}
			if strings.Contains(a.Value.String(), "AS v") {
				found = true
			}
		}
	}
	if !found {
		var names []string
		for _, s := range rec.Ended() {
			names = append(names, s.Name())
		}
		t.Fatalf("no span carries the statement's text; spans: %v", names)
	}
}
