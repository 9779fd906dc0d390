package obs

import (
	"context"
	"database/sql"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gorm.io/gorm"
)

// Metrics holds tenantd's Prometheus registry and instruments. Labels are
// bounded: route templates (never raw paths), methods, status codes,
// subscriber names, plans, meters, outcomes — never tenant ids.
type Metrics struct {
	Registry *prometheus.Registry

	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	inFlight       prometheus.Gauge
	RedisErrors    *prometheus.CounterVec
	DeadLettered   *prometheus.CounterVec
	SagaOutcomes   *prometheus.CounterVec
	Rejected       *prometheus.CounterVec
	RateLimitFails prometheus.Counter
	BreakerState   prometheus.Gauge
	// TxRetries counts transactions db.WithTenant and db.WithPlatform ran
	// again after a deadlock (40P01) or serialization failure (40001).
	TxRetries *prometheus.CounterVec
}

// NewMetrics creates the registry with the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantd_http_requests_total", Help: "HTTP requests by route template, method and status.",
	}, []string{"route", "method", "status"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tenantd_http_request_duration_seconds", Help: "HTTP request latency by route template and method.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route", "method"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tenantd_http_requests_in_flight", Help: "HTTP requests being served.",
	})
	m.RedisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantd_redis_errors_total", Help: "Redis operations that failed, by use.",
	}, []string{"use"})
	m.DeadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantd_events_dead_lettered_total", Help: "Events parked after their subscriber kept failing.",
	}, []string{"subscriber"})
	m.SagaOutcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantd_saga_outcomes_total", Help: "Orders the saga finished, by outcome (completed, or cancelled with its reason).",
	}, []string{"outcome"})
	m.Rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantd_requests_rejected_total", Help: "Requests refused by rate limits (rate_limited) or quotas (quota_exceeded), by plan.",
	}, []string{"reason", "plan"})
	m.RateLimitFails = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tenantd_rate_limit_unavailable_total", Help: "Requests whose rate limit could not be checked (Redis down).",
	})
	m.BreakerState = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tenantd_payment_gateway_breaker_open", Help: "1 while the payment gateway circuit breaker is open, 0.5 half-open, 0 closed.",
	})
	m.TxRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantd_db_tx_retries_total", Help: "Transactions run again after a deadlock (code 40P01) or serialization failure (40001).",
	}, []string{"code"})
	for _, code := range []string{"40P01", "40001"} {
		m.TxRetries.WithLabelValues(code)
	}
	m.Registry.MustRegister(m.requests, m.duration, m.inFlight, m.RedisErrors, m.DeadLettered, m.SagaOutcomes,
		m.Rejected, m.RateLimitFails, m.BreakerState, m.TxRetries,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry at /metrics. A collector that fails (the
// outbox lag's query timing out on a loaded database) leaves its metric out
// of that scrape, counted in promhttp_metric_handler_errors_total, instead
// of failing the whole scrape with a 500.
func (m *Metrics) Handler() gin.HandlerFunc {
	h := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry, ErrorHandling: promhttp.ContinueOnError})
	return gin.WrapH(h)
}

// CountTxRetry counts one transaction retried after the SQLSTATE code; wire
// it with db.SetOnRetry.
func (m *Metrics) CountTxRetry(code string) { m.TxRetries.WithLabelValues(code).Inc() }

// StartRequest counts a request in flight until end is called.
func (m *Metrics) StartRequest() (end func()) {
	m.inFlight.Inc()
	return m.inFlight.Dec
}

// ObserveRequest records a finished request by route template (or
// "unmatched"), method and status, with its latency.
func (m *Metrics) ObserveRequest(route, method string, status int, latency time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(latency.Seconds())
}

// CountRejected counts one request a rate limit or quota refused, by
// reason (its error code) and plan.
func (m *Metrics) CountRejected(reason, plan string) { m.Rejected.WithLabelValues(reason, plan).Inc() }

// CollectDBStats exports the connection pool's statistics.
func (m *Metrics) CollectDBStats(stats func() sql.DBStats) {
	gauge := func(name, help string, v func(sql.DBStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tenantd_db_" + name, Help: help},
			func() float64 { return v(stats()) })
	}
	counter := func(name, help string, v func(sql.DBStats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tenantd_db_" + name, Help: help},
			func() float64 { return v(stats()) })
	}
	m.Registry.MustRegister(
		gauge("open_connections", "Open connections to PostgreSQL.", func(s sql.DBStats) float64 { return float64(s.OpenConnections) }),
		gauge("in_use_connections", "Connections in use.", func(s sql.DBStats) float64 { return float64(s.InUse) }),
		gauge("idle_connections", "Idle connections.", func(s sql.DBStats) float64 { return float64(s.Idle) }),
		gauge("max_open_connections", "Pool size limit.", func(s sql.DBStats) float64 { return float64(s.MaxOpenConnections) }),
		counter("wait_count_total", "Times a request waited for a connection.", func(s sql.DBStats) float64 { return float64(s.WaitCount) }),
		counter("wait_seconds_total", "Time spent waiting for a connection.", func(s sql.DBStats) float64 { return s.WaitDuration.Seconds() }),
	)
}

// CollectOutboxLag exports, per subscriber, the age of the oldest event it
// has not handled yet.
func (m *Metrics) CollectOutboxLag(lag func(context.Context) (map[string]time.Duration, error)) {
	m.Registry.MustRegister(&lagCollector{lag: lag, desc: prometheus.NewDesc("tenantd_outbox_lag_seconds",
		"Age of the oldest event a subscriber has not handled yet.", []string{"subscriber"}, nil)})
}

type lagCollector struct {
	lag  func(context.Context) (map[string]time.Duration, error)
	desc *prometheus.Desc
}

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lags, err := l.lag(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(l.desc, err)
		return
	}
	for sub, d := range lags {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, d.Seconds(), sub)
	}
}

// FlushLagSource is where the time since the last usage flush is read.
type FlushLagSource interface {
	Unscoped(ctx context.Context) *gorm.DB
}

// CollectFlushLag exports the seconds since any replica last flushed usage
// counters into PostgreSQL (usage_flushes), read at scrape time.
func (m *Metrics) CollectFlushLag(d FlushLagSource) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tenantd_usage_flush_lag_seconds", Help: "Seconds since usage counters were last flushed to PostgreSQL (by any replica).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var lag float64
		if err := d.Unscoped(ctx).Raw("SELECT coalesce(extract(epoch FROM now() - max(flushed_at)), 0)::float8 FROM usage_flushes").Scan(&lag).Error; err != nil {
			return -1
		}
		return lag
	}))
}

// dependencyTimeout bounds each dependency check of a scrape.
const dependencyTimeout = time.Second

// CollectDependencies exports tenantd_dependency_up{dependency}: 1 when the
// dependency's check (a ping) succeeds at scrape time, 0 when it fails or
// takes longer than a second. The checks run concurrently.
func (m *Metrics) CollectDependencies(checks map[string]func(context.Context) error) {
	m.Registry.MustRegister(&dependencyCollector{checks: checks, desc: prometheus.NewDesc("tenantd_dependency_up",
		"Whether a dependency (postgres, redis) answered a ping at scrape time: 1 up, 0 down.", []string{"dependency"}, nil)})
}

type dependencyCollector struct {
	checks map[string]func(context.Context) error
	desc   *prometheus.Desc
}

func (d *dependencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *dependencyCollector) Collect(ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	for name, check := range d.checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), dependencyTimeout)
			defer cancel()
			up := 0.0
			if check(ctx) == nil {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, up, name)
		})
	}
	wg.Wait()
}
