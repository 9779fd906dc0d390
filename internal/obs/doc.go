// Package obs is tenantd's observability: Prometheus metrics (one registry,
// no unbounded labels), OpenTelemetry tracing (on only when an OTLP
// endpoint is configured, otherwise no cost), and a slog handler that adds
// the trace and span ids to every log line written with a request context.
package obs
