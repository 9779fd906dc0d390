// Package app wires tenantd together: configuration and connections in,
// stores, services, the middleware chain and every module's routes out. It
// is the one place that knows all modules; main.go and the HTTP tests both
// build the server through it, so tests exercise the real chain.
package app

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/gdpr"
	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/idempotency"
	"github.com/tenantd/tenantd/internal/obs"
	"github.com/tenantd/tenantd/internal/openapi"
	"github.com/tenantd/tenantd/internal/relay"
	"github.com/tenantd/tenantd/inventory"
	"github.com/tenantd/tenantd/orders"
	"github.com/tenantd/tenantd/payments"
	"github.com/tenantd/tenantd/tenant"
	"github.com/tenantd/tenantd/webhooks"
)

// orderSweepEvery is how often expired reservations are looked for.
const orderSweepEvery = 2 * time.Second

// operatorPermission is the one permission of every /admin/v1 route.
const operatorPermission = "platform:operate"

// App is a wired tenantd server.
type App struct {
	Engine    *gin.Engine
	Routes    *httpx.Table
	Auth      *auth.Service
	RBAC      *auth.RBAC
	Tenants   *tenant.Service
	Inventory *inventory.Service
	Orders    *orders.Service
	Payments  *payments.Service
	Events    *events.Dispatcher
	// Idempotency stores the responses of POSTs sent with Idempotency-Key.
	Idempotency *idempotency.Store
	// Audit records every mutating request and failed-authentication
	// bursts, and serves the audit trail.
	Audit   *audit.Auditor
	Metrics *obs.Metrics
	// Usage counts request meters (Redis first, PostgreSQL when Redis is
	// down) and flushes them into usage_counters.
	Usage  *billing.Counter
	Limits *billing.Limits
	// Exports builds tenants' data exports (GDPR) in the background.
	Exports *gdpr.Exporter
	// Relay publishes every event to NATS JetStream (EVENT_RELAY=nats);
	// nil when it is off.
	Relay *relay.Relay
	// Webhooks enqueues every event for the tenant's endpoints and runs
	// the delivery workers.
	Webhooks *webhooks.Service

	cfg    config.Config
	db     *db.DB
	redis  *redis.Client
	log    *slog.Logger
	health *health
}

// New wires the server from its configuration and connections.
func New(cfg config.Config, d *db.DB, rdb *redis.Client, log *slog.Logger) (*App, error) {
	gin.SetMode(gin.ReleaseMode)
	a := &App{cfg: cfg, db: d, redis: rdb, log: log, Routes: &httpx.Table{}, Metrics: obs.NewMetrics()}
	m := a.Metrics
	issuerPolicy := auth.IssuerPolicy{AllowInsecure: cfg.OIDCAllowInsecureIssuers}
	rbac, err := auth.NewRBAC(d, rdb, log, auth.RBACOptions{})
	if err != nil {
		return nil, fmt.Errorf("rbac: %w", err)
	}
	a.RBAC = rbac
	// The audit sealer holds its lease on a connection of its own, outside
	// the pool (as the event dispatcher's LISTEN does).
	a.Audit = audit.New(d, log, audit.Options{LeaseURL: cfg.DatabaseURL})
	// Each request's audit entry commits with its first write.
	d.SetBeforeCommit(a.Audit.BeforeCommit)
	// Transactions retried after a deadlock or serialization failure.
	d.SetOnRetry(m.CountTxRetry)
	opts := []auth.Option{
		auth.WithFailureRecorder(a.Audit),
		auth.WithRoles(rbac),
		auth.WithIssuerPolicy(issuerPolicy),
		auth.WithMaxKeyTTL(cfg.APIKeyMaxTTL),
		auth.WithTenantIssuers(tenantIssuers(func(ctx context.Context, id uuid.UUID) (string, error) {
			return a.Tenants.OIDCIssuer(ctx, id)
		})),
	}
	if cfg.PlatformOIDCIssuer != "" {
		opts = append(opts, auth.WithPlatformIssuer(auth.PlatformIssuer{Issuer: cfg.PlatformOIDCIssuer,
			Audience: cfg.PlatformOIDCAudience, Role: cfg.PlatformOIDCRole, RolesClaim: cfg.PlatformOIDCRolesClaim}))
	}
	a.Auth = auth.NewService(d, rdb, cfg.APIKeyCacheTTL, log, opts...)
	a.Tenants = tenant.NewService(d, a.Auth, a.Auth, issuerPolicy, a.Auth)
	a.Inventory = inventory.NewService(d)
	a.Orders = orders.NewService(d, stock{a.Inventory}, log, orders.Options{ReservationTTL: cfg.ReservationTTL, Refunds: refunds{a}})
	gateway := payments.NewResilient(
		payments.NewSimulated(d, payments.SimulatedOptions{FailTimes: cfg.GatewayFailTimes, Latency: cfg.GatewayLatency}),
		payments.ResilienceOptions{OnStateChange: func(from, to gobreaker.State) {
			log.Warn("payments: gateway circuit breaker changed state", "from", from.String(), "to", to.String())
			m.BreakerState.Set(map[gobreaker.State]float64{gobreaker.StateOpen: 1, gobreaker.StateHalfOpen: 0.5}[to])
		}})
	a.Payments = payments.NewService(d, payable{a.Orders}, gateway)
	a.Events = events.NewDispatcher(d, log, events.Options{ListenURL: cfg.DatabaseURL,
		OnPark: func(sub string) { m.DeadLettered.WithLabelValues(sub).Inc() }})
	a.Orders.Subscribe(a.Events)
	billing.SubscribeMeters(a.Events)
	a.Webhooks, err = webhooks.NewService(d, log, webhooks.Options{AllowPrivate: cfg.WebhookAllowPrivate,
		SecretKey: cfg.WebhookSecretKey, Metrics: m.Registry})
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	a.Webhooks.Subscribe(a.Events)
	a.Usage = billing.NewCounter(rdb, d, log, time.Now)
	a.Limits = billing.NewLimits(rdb, d, log, billing.LimitOptions{FailOpen: cfg.RateLimitFailOpen, Counter: a.Usage,
		OnRedisError: func(bool) { m.RateLimitFails.Inc(); m.RedisErrors.WithLabelValues("rate_limit").Inc() }})
	m.CollectFlushLag(d)
	a.Events.Subscribe("metrics-saga", []string{orders.EventCompleted, orders.EventCancelled}, sagaOutcomes(m))
	m.CollectDBStats(d.Stats)
	if a.Relay, err = newRelay(cfg, d, log, m); err != nil {
		return nil, err
	}
	m.CollectOutboxLag(a.outboxLag)
	a.Idempotency = idempotency.NewStore(d, time.Now)
	a.Exports = gdpr.NewExporter(d, log, gdpr.ExportOptions{})
	gdprHandler := gdpr.NewHandler(a.Exports, gdpr.NewEraser(d, rdb, a.Auth, log))
	a.health = newHealth(log, d, rdb, cfg.RateLimitFailOpen, m)

	e := gin.New()
	e.ContextWithFallback = true
	// Client addresses come from the connection, not from X-Forwarded-For,
	// unless proxies are configured: the audit trail records them.
	if err := e.SetTrustedProxies(nil); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	tenantRoutes := a.chain(e, cfg.Tracing, cfg.BaseDomain)
	e.NoRoute(func(c *gin.Context) { httpx.Fail(c, fault.NotFound, "no such route") })
	e.GET("/healthz", a.health.live)
	e.GET("/readyz", a.health.ready)
	e.GET("/metrics", m.Handler())
	e.GET(openapi.SpecPath, openapi.Spec())
	e.GET(openapi.DocsPath, openapi.Docs())
	e.GET(openapi.ViewerPath, openapi.Viewer())

	tenant.NewHandler(a.Tenants).Routes(tenantRoutes)
	authHandler := auth.NewHandler(a.Auth)
	authHandler.Routes(tenantRoutes)
	authHandler.MemberRoutes(tenantRoutes)
	auth.NewRolesHandler(a.RBAC).Routes(tenantRoutes)
	inventory.NewHandler(a.Inventory).Routes(tenantRoutes)
	orders.NewHandler(a.Orders).Routes(tenantRoutes)
	payments.NewHandler(a.Payments).Routes(tenantRoutes)
	cursors, err := eventCursors(cfg.CursorSecret, log)
	if err != nil {
		return nil, err
	}
	// Open streams re-check their credential with auth and count against
	// their tenant's cap of open streams.
	logHandler := events.NewLogHandler(events.NewFeed(d), cursors, a.Auth,
		events.NewStreamLimit(d, rdb, log, events.StreamLimitOptions{}))
	logHandler.Stop = a.health.stopping
	logHandler.Routes(tenantRoutes)
	billingHandler := billing.NewHandler(billing.NewReporter(d), billing.NewExporter(d.LongRunning()))
	billingHandler.Routes(tenantRoutes)
	audit.NewHandler(a.Audit, cursors).Routes(tenantRoutes)
	gdprHandler.Routes(tenantRoutes)
	webhooks.NewHandler(a.Webhooks).Routes(tenantRoutes)

	// Without an operator credential configured the operator routes do not
	// exist (404).
	if cfg.PlatformAPIKey != "" || cfg.PlatformOIDCIssuer != "" {
		platformLog := audit.NewPlatformLog(d, log)
		adminRoutes := a.adminChain(e, cfg.PlatformAPIKey, platformLog)
		tenant.NewHandler(a.Tenants).AdminRoutes(adminRoutes, operatorPermission)
		billingHandler.AdminRoutes(adminRoutes, operatorPermission)
		events.NewAdminHandler(a.Events).AdminRoutes(adminRoutes, operatorPermission)
		audit.NewPlatformHandler(platformLog).AdminRoutes(adminRoutes, operatorPermission)
		gdprHandler.AdminRoutes(adminRoutes, operatorPermission)
	}
	a.Engine = e
	return a, nil
}

// tenantIssuers adapts a function to auth.TenantIssuers, so auth can ask
// the tenant module (built after it) for a tenant's issuer.
type tenantIssuers func(ctx context.Context, id uuid.UUID) (string, error)

func (f tenantIssuers) OIDCIssuer(ctx context.Context, id uuid.UUID) (string, error) {
	return f(ctx, id)
}

// eventCursors keys the opaque event cursors with CURSOR_SECRET, or, when
// it is unset, with a random secret of this process (and says what that
// costs).
func eventCursors(secret string, log *slog.Logger) (*events.Cursors, error) {
	key := []byte(secret)
	if len(key) == 0 {
		key = make([]byte, events.MinCursorSecret)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("event cursor secret: %w", err)
		}
		log.Warn("CURSOR_SECRET is not set: event cursors use a random key of this process, so they fail (422) after a restart " +
			"and on other replicas; set the same CURSOR_SECRET on every replica")
	}
	c, err := events.NewCursors(key)
	if err != nil {
		return nil, fmt.Errorf("event cursors: %w", err)
	}
	return c, nil
}

// Handler is the HTTP handler of the server.
func (a *App) Handler() http.Handler { return a.Engine }

// Run runs the background work until ctx ends: policy propagation and
// credential invalidations from other replicas.
func (a *App) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { a.RBAC.Run(ctx) })
	wg.Go(func() { a.Auth.ListenForInvalidations(ctx) })
	wg.Go(func() { a.Usage.Run(ctx) })
	wg.Go(func() {
		if err := a.Events.Run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("event dispatcher stopped", "err", err)
		}
	})
	wg.Go(func() { a.Orders.RunSweeper(ctx, orderSweepEvery) })
	wg.Go(func() { a.Idempotency.RunSweeper(ctx, 10*time.Minute, a.log) })
	wg.Go(func() { a.Payments.RunReconciler(ctx, payments.DefaultReconcileEvery, a.log) })
	wg.Go(func() { a.Audit.RunSealer(ctx) })
	wg.Go(func() { a.Exports.Run(ctx) })
	wg.Go(func() { a.runRelay(ctx) })
	wg.Go(func() { a.Webhooks.Run(ctx) })
	wg.Wait()
}

// SetDraining makes /readyz answer 503, so load balancers stop sending new
// requests while in-flight ones finish.
func (a *App) SetDraining() {
	if !a.health.draining.Swap(true) {
		close(a.health.stopping)
	}
}
