// Package config reads tenantd's configuration from the environment and
// validates it at start, naming the variable that is wrong.
package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is tenantd's validated configuration.
type Config struct {
	DatabaseURL        string        // DATABASE_URL: the runtime role (tenantd_app)
	MigrateDatabaseURL string        // MIGRATE_DATABASE_URL: the owner role; defaults to DatabaseURL
	WorkerDatabaseURL  string        // WORKER_DATABASE_URL: the worker role (tenantd_worker)
	RedisURL           string        // REDIS_URL
	HTTPAddr           string        // HTTP_ADDR, default :8080
	PlatformAPIKey     string        // PLATFORM_API_KEY; empty disables /admin/v1
	BaseDomain         string        // BASE_DOMAIN, for {slug}.{BASE_DOMAIN} tenant selection
	LogLevel           slog.Level    // LOG_LEVEL: debug|info|warn|error
	LogFormat          string        // LOG_FORMAT: json|text
	DBMaxConns         int           // DB_MAX_CONNS, default 20
	DBLockTimeout      time.Duration // DB_LOCK_TIMEOUT, default 2s; 0 leaves the server's setting
	DBStatementTimeout time.Duration // DB_STATEMENT_TIMEOUT, default 10s; 0 leaves the server's setting
	DBIdleInTxTimeout  time.Duration // DB_IDLE_IN_TX_TIMEOUT, default 30s; 0 leaves the server's setting
	APIKeyCacheTTL     time.Duration // API_KEY_CACHE_TTL, default 10s
	APIKeyMaxTTL       time.Duration // API_KEY_MAX_TTL, default 8760h (one year): the longest an API key lives
	ShutdownTimeout    time.Duration // SHUTDOWN_TIMEOUT, default 20s
	DrainDelay         time.Duration // SHUTDOWN_DRAIN_DELAY, default 2s
	ReservationTTL     time.Duration // ORDER_RESERVATION_TTL, default 15m
	Tracing            bool          // OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) set
	RateLimitFailOpen  bool          // RATE_LIMIT_FAIL: open (default) or closed
	GatewayFailTimes   int           // PAYMENT_GATEWAY_FAIL_TIMES, default 2
	GatewayLatency     time.Duration // PAYMENT_GATEWAY_LATENCY, default 0s

	OIDCAllowInsecureIssuers bool   // OIDC_ALLOW_INSECURE_ISSUERS: allow http and private addresses
	PlatformOIDCIssuer       string // PLATFORM_OIDC_ISSUER: operators sign in with tokens from it
	PlatformOIDCAudience     string // PLATFORM_OIDC_AUDIENCE
	PlatformOIDCRole         string // PLATFORM_OIDC_ROLE, default platform-admin
	PlatformOIDCRolesClaim   string // PLATFORM_OIDC_ROLES_CLAIM, default roles

	CursorSecret string // CURSOR_SECRET: key of the opaque event cursors; empty: random per process

	WebhookAllowPrivate bool   // WEBHOOK_ALLOW_PRIVATE: webhook endpoints on loopback/private addresses and http
	WebhookSecretKey    string // WEBHOOK_SECRET_KEY: seals webhook signing secrets at rest; empty: stored plain

	EventRelay string // EVENT_RELAY: "" (off) or "nats"
	NATSURL    string // NATS_URL: the relay's NATS server(s), comma-separated
}

// RelayNATS is EVENT_RELAY's value that publishes every event to NATS
// JetStream.
const RelayNATS = "nats"

// Var describes one configuration variable, for the README table and --help.
type Var struct {
	Name, Default, Meaning string
}

// Vars lists every variable Load reads.
var Vars = []Var{
	{"DATABASE_URL", "(dev: throw-away server)", "PostgreSQL URL of the runtime role; must not be superuser, BYPASSRLS, CREATEROLE or (a member of) a table owner"},
	{"MIGRATE_DATABASE_URL", "DATABASE_URL", "PostgreSQL URL of the owner role that runs migrations"},
	{"WORKER_DATABASE_URL", "(dev: throw-away server)", "PostgreSQL URL of the worker role (tenantd_worker, created by the migrations; give it a password): the background workers' and billing exports' reads across tenants, which the runtime role cannot make; required with DATABASE_URL"},
	{"REDIS_URL", "(dev: throw-away server)", "Redis URL, e.g. redis://127.0.0.1:6379/0"},
	{"HTTP_ADDR", ":8080", "listen address"},
	{"PLATFORM_API_KEY", "(unset)", "operator key for /admin/v1, at least 24 characters; with neither it nor PLATFORM_OIDC_ISSUER set, /admin/v1 answers 404"},
	{"BASE_DOMAIN", "(unset)", "enables tenant selection by subdomain {slug}.{BASE_DOMAIN}"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"LOG_FORMAT", "json", "json or text"},
	{"DB_MAX_CONNS", "20", "maximum open PostgreSQL connections per process"},
	{"DB_LOCK_TIMEOUT", "2s", "lock_timeout of the runtime connections: a request that waits longer for a lock gets 503 with Retry-After; keep it above PostgreSQL's deadlock_timeout (1s) so that deadlocks are found, and retried, first; 0 leaves the server's setting"},
	{"DB_STATEMENT_TIMEOUT", "10s", "statement_timeout of the runtime connections: a longer statement is cancelled and its request gets 503 with Retry-After; must exceed DB_LOCK_TIMEOUT; billing exports (on up to 2 extra connections) and the CLI commands run without it; 0 leaves the server's setting"},
	{"DB_IDLE_IN_TX_TIMEOUT", "30s", "idle_in_transaction_session_timeout of the runtime connections: a transaction left idle longer is ended, its connection closed and its request answered 503; 0 leaves the server's setting"},
	{"API_KEY_CACHE_TTL", "10s", "how long a verified API key is cached; a revocation reaches every replica within milliseconds over Redis pub/sub, and within this TTL if Redis is down"},
	{"API_KEY_MAX_TTL", "8760h", "the longest an API key lives: a key created without expires_at expires after it, one asking for longer is refused (422), and a key created by a key never outlives its creator"},
	{"SHUTDOWN_TIMEOUT", "20s", "how long in-flight requests may finish after SIGTERM"},
	{"SHUTDOWN_DRAIN_DELAY", "2s (dev: 0s)", "after SIGTERM, how long /readyz answers 503 while new requests are still served, so load balancers stop routing first"},
	{"ORDER_RESERVATION_TTL", "15m", "how long a pending order holds its stock before the sweeper cancels it (reservation_expired)"},
	{"PAYMENT_GATEWAY_FAIL_TIMES", "2", "simulated gateway: how many times payment_method card_error fails before it succeeds (negative: always)"},
	{"PAYMENT_GATEWAY_LATENCY", "0s", "simulated gateway: latency of every charge"},
	{"RATE_LIMIT_FAIL", "open", "when Redis cannot decide a rate limit: open lets the request through (with a warning and a metric), closed answers 503"},
	{"OTEL_EXPORTER_OTLP_ENDPOINT", "(unset: tracing off)", "OTLP/HTTP endpoint for traces; the other standard OTEL_* variables (OTEL_SERVICE_NAME, headers, sampler) apply"},
	{"OIDC_ALLOW_INSECURE_ISSUERS", "false", "allow tenants to register http issuers and loopback/private addresses (development and tests only: opens SSRF)"},
	{"PLATFORM_OIDC_ISSUER", "(unset)", "issuer whose tokens, carrying PLATFORM_OIDC_ROLE, may use /admin/v1"},
	{"PLATFORM_OIDC_AUDIENCE", "(required with PLATFORM_OIDC_ISSUER)", "audience operator tokens must carry"},
	{"PLATFORM_OIDC_ROLE", "platform-admin", "role an operator token must carry"},
	{"PLATFORM_OIDC_ROLES_CLAIM", "roles", "claim of operator tokens that lists roles"},
	{"CURSOR_SECRET", "(unset: random per process)", "secret, at least 32 characters, that encrypts event cursors (next_cursor, SSE ids) so they reveal no global position; every replica needs the same one, or cursors fail (422) on another replica and after a restart"},
	{"WEBHOOK_ALLOW_PRIVATE", "false", "allow webhook endpoints on loopback and private addresses, and http URLs (development and tests only: opens SSRF)"},
	{"WEBHOOK_SECRET_KEY", "(unset: secrets stored plain)", "secret, at least 32 characters, that seals webhook signing secrets in the database (AES-256-GCM), so a database read alone does not reveal them; every replica needs the same one, and changing it makes existing endpoints unusable until their secrets are rotated"},
	{"EVENT_RELAY", "(unset: off)", "nats publishes every event to the NATS JetStream stream TENANTD_EVENTS (created if missing), subject tenantd.<tenant_id>.<type>, header Nats-Msg-Id = event id: in order per stream, at least once, de-duplicated by JetStream"},
	{"NATS_URL", "(required with EVENT_RELAY=nats; dev: embedded server)", "NATS server URL(s) of the event relay, nats:// or tls://, comma-separated"},
}

// Load reads the configuration through getenv (os.Getenv in production).
func Load(getenv func(string) string) (Config, error) {
	c := Config{
		DatabaseURL:        getenv("DATABASE_URL"),
		MigrateDatabaseURL: getenv("MIGRATE_DATABASE_URL"),
		WorkerDatabaseURL:  getenv("WORKER_DATABASE_URL"),
		RedisURL:           getenv("REDIS_URL"),
		HTTPAddr:           or(getenv("HTTP_ADDR"), ":8080"),
		PlatformAPIKey:     getenv("PLATFORM_API_KEY"),
		BaseDomain:         strings.ToLower(strings.TrimSpace(getenv("BASE_DOMAIN"))),
		LogFormat:          or(getenv("LOG_FORMAT"), "json"),

		Tracing:                getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "",
		PlatformOIDCIssuer:     getenv("PLATFORM_OIDC_ISSUER"),
		PlatformOIDCAudience:   getenv("PLATFORM_OIDC_AUDIENCE"),
		PlatformOIDCRole:       or(getenv("PLATFORM_OIDC_ROLE"), "platform-admin"),
		PlatformOIDCRolesClaim: or(getenv("PLATFORM_OIDC_ROLES_CLAIM"), "roles"),
		CursorSecret:           getenv("CURSOR_SECRET"),
		EventRelay:             strings.TrimSpace(getenv("EVENT_RELAY")),
		NATSURL:                strings.TrimSpace(getenv("NATS_URL")),
		WebhookSecretKey:       getenv("WEBHOOK_SECRET_KEY"),
	}
	if c.MigrateDatabaseURL == "" {
		c.MigrateDatabaseURL = c.DatabaseURL
	}
	var errs []string
	bad := func(name, format string, args ...any) {
		errs = append(errs, name+": "+fmt.Sprintf(format, args...))
	}
	for name, v := range map[string]string{"DATABASE_URL": c.DatabaseURL, "MIGRATE_DATABASE_URL": c.MigrateDatabaseURL, "WORKER_DATABASE_URL": c.WorkerDatabaseURL} {
		if v != "" && !validURL(v, "postgres", "postgresql") {
			bad(name, "must be a postgres:// URL")
		}
	}
	if c.RedisURL != "" && !validURL(c.RedisURL, "redis", "rediss", "unix") {
		bad("REDIS_URL", "must be a redis:// URL")
	}
	if err := c.LogLevel.UnmarshalText([]byte(or(getenv("LOG_LEVEL"), "info"))); err != nil {
		bad("LOG_LEVEL", "must be debug, info, warn or error (got %q)", getenv("LOG_LEVEL"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("LOG_FORMAT", "must be json or text (got %q)", c.LogFormat)
	}
	if c.PlatformAPIKey != "" && len(c.PlatformAPIKey) < 24 {
		bad("PLATFORM_API_KEY", "must be at least 24 characters")
	}
	if c.CursorSecret != "" && len(c.CursorSecret) < 32 {
		bad("CURSOR_SECRET", "must be at least 32 characters")
	}
	if c.WebhookSecretKey != "" && len(c.WebhookSecretKey) < 32 {
		bad("WEBHOOK_SECRET_KEY", "must be at least 32 characters")
	}
	var err error
	if c.OIDCAllowInsecureIssuers, err = strconv.ParseBool(or(getenv("OIDC_ALLOW_INSECURE_ISSUERS"), "false")); err != nil {
		bad("OIDC_ALLOW_INSECURE_ISSUERS", "must be true or false (got %q)", getenv("OIDC_ALLOW_INSECURE_ISSUERS"))
	}
	if c.WebhookAllowPrivate, err = strconv.ParseBool(or(getenv("WEBHOOK_ALLOW_PRIVATE"), "false")); err != nil {
		bad("WEBHOOK_ALLOW_PRIVATE", "must be true or false (got %q)", getenv("WEBHOOK_ALLOW_PRIVATE"))
	}
	if c.PlatformOIDCIssuer != "" && !validURL(c.PlatformOIDCIssuer, "https", "http") {
		bad("PLATFORM_OIDC_ISSUER", "must be an https URL")
	}
	if c.PlatformOIDCIssuer != "" && c.PlatformOIDCAudience == "" {
		bad("PLATFORM_OIDC_AUDIENCE", "must be set with PLATFORM_OIDC_ISSUER")
	}
	if c.DBMaxConns, err = strconv.Atoi(or(getenv("DB_MAX_CONNS"), "20")); err != nil || c.DBMaxConns < 2 {
		bad("DB_MAX_CONNS", "must be an integer of at least 2 (got %q)", getenv("DB_MAX_CONNS"))
	}
	if c.DBLockTimeout, err = pgTimeout(getenv("DB_LOCK_TIMEOUT"), "2s"); err != nil {
		bad("DB_LOCK_TIMEOUT", "%v", err)
	}
	if c.DBStatementTimeout, err = pgTimeout(getenv("DB_STATEMENT_TIMEOUT"), "10s"); err != nil {
		bad("DB_STATEMENT_TIMEOUT", "%v", err)
	}
	if c.DBIdleInTxTimeout, err = pgTimeout(getenv("DB_IDLE_IN_TX_TIMEOUT"), "30s"); err != nil {
		bad("DB_IDLE_IN_TX_TIMEOUT", "%v", err)
	}
	// A lock wait is part of its statement: a lock timeout no shorter than
	// the statement timeout would never fire.
	if c.DBLockTimeout > 0 && c.DBStatementTimeout > 0 && c.DBLockTimeout >= c.DBStatementTimeout {
		bad("DB_LOCK_TIMEOUT", "must be shorter than DB_STATEMENT_TIMEOUT (got %s, statement timeout %s)", c.DBLockTimeout, c.DBStatementTimeout)
	}
	if c.APIKeyCacheTTL, err = duration(getenv("API_KEY_CACHE_TTL"), "10s"); err != nil {
		bad("API_KEY_CACHE_TTL", "%v", err)
	}
	if c.APIKeyMaxTTL, err = duration(getenv("API_KEY_MAX_TTL"), "8760h"); err != nil || c.APIKeyMaxTTL < time.Minute {
		bad("API_KEY_MAX_TTL", "must be a duration of at least 1m such as 720h (got %q)", getenv("API_KEY_MAX_TTL"))
	}
	if c.ShutdownTimeout, err = duration(getenv("SHUTDOWN_TIMEOUT"), "20s"); err != nil {
		bad("SHUTDOWN_TIMEOUT", "%v", err)
	}
	if c.DrainDelay, err = duration(getenv("SHUTDOWN_DRAIN_DELAY"), "2s"); err != nil {
		bad("SHUTDOWN_DRAIN_DELAY", "%v", err)
	}
	switch getenv("RATE_LIMIT_FAIL") {
	case "", "open":
		c.RateLimitFailOpen = true
	case "closed":
	default:
		bad("RATE_LIMIT_FAIL", "must be open or closed (got %q)", getenv("RATE_LIMIT_FAIL"))
	}
	if c.ReservationTTL, err = duration(getenv("ORDER_RESERVATION_TTL"), "15m"); err != nil || c.ReservationTTL < time.Second {
		bad("ORDER_RESERVATION_TTL", "must be a duration of at least 1s (got %q)", getenv("ORDER_RESERVATION_TTL"))
	}
	if c.GatewayFailTimes, err = strconv.Atoi(or(getenv("PAYMENT_GATEWAY_FAIL_TIMES"), "2")); err != nil {
		bad("PAYMENT_GATEWAY_FAIL_TIMES", "must be an integer (got %q)", getenv("PAYMENT_GATEWAY_FAIL_TIMES"))
	}
	if c.GatewayLatency, err = duration(getenv("PAYMENT_GATEWAY_LATENCY"), "0s"); err != nil {
		bad("PAYMENT_GATEWAY_LATENCY", "%v", err)
	}
	switch c.EventRelay {
	case "", RelayNATS:
	default:
		bad("EVENT_RELAY", "must be nats or unset (got %q)", c.EventRelay)
	}
	if c.NATSURL != "" {
		for _, u := range strings.Split(c.NATSURL, ",") {
			if !validURL(strings.TrimSpace(u), "nats", "tls") {
				bad("NATS_URL", "must be nats:// or tls:// URLs, comma-separated")
				break
			}
		}
		if c.EventRelay != RelayNATS {
			bad("NATS_URL", "is read only with EVENT_RELAY=nats")
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration:\n  %s", strings.Join(errs, "\n  "))
	}
	return c, nil
}

// RequireServices checks that the URLs serve needs are present.
func (c Config) RequireServices() error {
	var missing []string
	if c.DatabaseURL == "" {
		missing = append(missing, "DATABASE_URL")
	}
	if c.WorkerDatabaseURL == "" {
		missing = append(missing, "WORKER_DATABASE_URL")
	}
	if c.RedisURL == "" {
		missing = append(missing, "REDIS_URL")
	}
	if c.EventRelay == RelayNATS && c.NATSURL == "" {
		missing = append(missing, "NATS_URL (with EVENT_RELAY=nats)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("invalid configuration: %s must be set (or use `tenantd dev` for throw-away servers)", strings.Join(missing, ", "))
	}
	return nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func validURL(raw string, schemes ...string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return true
		}
	}
	return false
}

// maxPGTimeout is the largest timeout PostgreSQL accepts (INT_MAX ms).
const maxPGTimeout = 2147483647 * time.Millisecond

// pgTimeout parses a PostgreSQL timeout: 0 (leave the server's setting) or
// a duration of 1ms to about 24 days.
func pgTimeout(v, def string) (time.Duration, error) {
	d, err := time.ParseDuration(or(v, def))
	if err != nil || d < 0 || (d > 0 && d < time.Millisecond) || d > maxPGTimeout {
		return 0, fmt.Errorf("must be 0 or a duration from 1ms to 596h such as 5s (got %q)", v)
	}
	return d, nil
}

func duration(v, def string) (time.Duration, error) {
	d, err := time.ParseDuration(or(v, def))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("must be a duration such as 10s (got %q)", v)
	}
	return d, nil
}
