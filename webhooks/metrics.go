package webhooks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the webhook instruments (docs/operations.md, "Webhooks").
// No tenant or endpoint label: their number is unbounded.
type metrics struct {
	attempts *prometheus.CounterVec
	latency  prometheus.Histogram
	disables *prometheus.CounterVec
	opened   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantd_webhook_attempts_total",
			Help: "Webhook delivery attempts by outcome: succeeded, failed (retried or given up), gone (410), breaker_open (not sent)."},
			[]string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tenantd_webhook_attempt_duration_seconds",
			Help: "How long webhook endpoints took to answer an attempt.", Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 15}}),
		disables: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenantd_webhook_endpoints_disabled_total",
			Help: "Webhook endpoints the delivery workers disabled, by reason: gone (410) or failing (3 days of failures)."},
			[]string{"reason"}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{Name: "tenantd_webhook_breaker_opened_total",
			Help: "Times an endpoint's circuit breaker opened in this process."}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.latency, m.disables, m.opened)
	}
	return m
}

func (m *metrics) attempt(outcome string, latency time.Duration) {
	m.attempts.WithLabelValues(outcome).Inc()
	if outcome != "breaker_open" {
		m.latency.Observe(latency.Seconds())
	}
}

func (m *metrics) disabled(reason string) {
	label := "failing"
	if reason == ReasonGone {
		label = "gone"
	}
	m.disables.WithLabelValues(label).Inc()
}

func (m *metrics) breakerOpened() { m.opened.Inc() }
