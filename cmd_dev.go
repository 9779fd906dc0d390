package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/app"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/devenv"
	"github.com/tenantd/tenantd/internal/devidp"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/relay"
	"github.com/tenantd/tenantd/inventory"
	"github.com/tenantd/tenantd/migrations"
	"github.com/tenantd/tenantd/tenant"
)

var devUsage = usage{name: "dev", text: `Usage: tenantd dev

Starts throw-away PostgreSQL and Redis from the local binaries (unless
DATABASE_URL / REDIS_URL are set), migrates, creates the demo tenant "acme"
with three products, starts a development OpenID Provider that acme trusts,
prints acme's admin API key, an operator key and how to get an ID token,
and serves on HTTP_ADDR until Ctrl-C, which removes everything it started.

The development identity provider (DEV_IDP_ADDR, default 127.0.0.1:8081;
a loopback address; "off" disables it) gives anyone an ID token for any
email, with aud "tenantd-dev":

  curl -s 'http://127.0.0.1:8081/dev/token?email=alice@example.com'

acme's settings.oidc trusts it, and lets users of example.com join on first
sign-in as viewers. Send the token as "Authorization: Bearer <token>".
The rest of the configuration is as for serve (tenantd help).
`}

// Development identity provider defaults.
const (
	devIdPAddr      = "127.0.0.1:8081"
	devIdPClientID  = "tenantd-dev" // the aud of its tokens, acme's settings.oidc.audience
	devIdPJITDomain = "example.com" // users of this domain join acme on first sign-in…
	devIdPJITRole   = "viewer"      // …with this role
	devExampleEmail = "alice@example.com"
)

func runDev(ctx context.Context, e env, args []string) error {
	cfg, log, err := parseAndLoad(e, devUsage, args)
	if err != nil {
		return err
	}
	idpAddr := e.getenv("DEV_IDP_ADDR")
	if idpAddr == "" {
		idpAddr = devIdPAddr
	}
	return dev(ctx, cfg, idpAddr, log, e)
}

// dev starts what is missing (PostgreSQL, Redis) from local binaries,
// migrates, seeds the demo tenant, starts the development identity
// provider and serves until Ctrl-C, then removes everything it started.
func dev(ctx context.Context, cfg config.Config, idpAddr string, log *slog.Logger, e env) error {
	// Both addresses first: a busy port is reported before anything starts.
	ln, err := listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	defer ln.Close()
	var idpLn net.Listener
	if idpAddr != "off" {
		if idpLn, err = listenLoopback(idpAddr); err != nil {
			return err
		}
		defer idpLn.Close()
	}

	var env *devenv.Env
	switch {
	case cfg.DatabaseURL == "":
		if env, err = devenv.Start(ctx, log); err != nil {
			return err
		}
		defer env.Stop()
		dbase, err := devenv.Provision(ctx, env.AdminURL, "tenantd")
		if err != nil {
			return err
		}
		cfg.MigrateDatabaseURL, cfg.DatabaseURL, cfg.WorkerDatabaseURL = dbase.OwnerURL, dbase.AppURL, dbase.WorkerURL
		if cfg.RedisURL == "" {
			cfg.RedisURL = env.RedisURL
		}
	case cfg.RedisURL == "":
		if env, err = devenv.StartRedisOnly(ctx, log); err != nil {
			return err
		}
		defer env.Stop()
		cfg.RedisURL = env.RedisURL
	}
	if cfg.WorkerDatabaseURL == "" {
		return errors.New("invalid configuration: WORKER_DATABASE_URL must be set with DATABASE_URL")
	}
	m, err := db.NewMigrator(cfg.MigrateDatabaseURL, migrations.Files)
	if err != nil {
		return err
	}
	err = m.Up()
	m.Close()
	if err != nil {
		return err
	}
	if env != nil && env.AdminURL != "" {
		if err := devenv.SetAppPassword(ctx, env.AdminURL); err != nil {
			return err
		}
	}
	if cfg.PlatformAPIKey == "" {
		cfg.PlatformAPIKey = "pk_dev_" + randomHex(16)
	}
	// Local identity providers (the one below, a Keycloak or Dex on
	// localhost) are allowed; Ctrl-C stops at once.
	cfg.OIDCAllowInsecureIssuers = true
	cfg.WebhookAllowPrivate = true // webhook receivers on localhost
	cfg.DrainDelay = 0
	// EVENT_RELAY=nats without NATS_URL: an embedded JetStream server,
	// its storage removed at exit (after the app has stopped).
	if cfg.EventRelay == config.RelayNATS && cfg.NATSURL == "" {
		natsDir, err := os.MkdirTemp("", "tenantd-nats-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(natsDir)
		natsURL, stopNATS, err := relay.StartEmbedded(ctx, natsDir)
		if err != nil {
			return err
		}
		defer stopNATS()
		cfg.NATSURL = natsURL
		log.Info("dev: embedded NATS JetStream serving", "url", natsURL)
	}
	defer setupTracing(ctx, &cfg, log)()
	c, err := connect(ctx, cfg, log, connectOptions{checkRole: true, app: true})
	if err != nil {
		return err
	}
	defer c.close()

	var idp *devidp.Provider
	if idpLn != nil {
		if idp, err = devidp.New("http://"+idpLn.Addr().String(), devidp.Options{ClientID: devIdPClientID}); err != nil {
			return err
		}
		stop := serveIdP(idp, idpLn, log)
		defer stop()
	}
	acme, adminKey, err := seedDemo(ctx, c.app)
	if err != nil {
		return err
	}
	trusted := false
	if idp != nil {
		if trusted, err = trustIdP(ctx, c.app, acme, idp.Issuer()); err != nil {
			return err
		}
	}
	printWelcome(e, cfg, adminKey, idp, trusted)
	return listenAndServe(ctx, cfg, ln, c.app, log)
}

// listenLoopback binds addr, which must be a loopback address: the
// development identity provider gives a token for any email to whoever
// asks.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("DEV_IDP_ADDR %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("DEV_IDP_ADDR %q: must be a loopback address such as 127.0.0.1:8081 (or off)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("DEV_IDP_ADDR %q: %w (set DEV_IDP_ADDR=127.0.0.1:PORT, or off)", addr, err)
	}
	return ln, nil
}

// serveIdP serves idp on ln until the returned function is called.
func serveIdP(idp *devidp.Provider, ln net.Listener, log *slog.Logger) (stop func()) {
	srv := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("dev identity provider stopped", "err", err)
		}
	}()
	log.Info("dev identity provider serving", "issuer", idp.Issuer())
	return func() {
		idp.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("dev identity provider: shutdown", "err", err)
		}
		<-done
	}
}

// seedDemo creates the tenant "acme" with a few products and returns it
// with its admin key; an acme left from an earlier run (a database given by
// URL) is kept, and its key cannot be shown again ("").
func seedDemo(ctx context.Context, a *app.App) (tenant.Tenant, string, error) {
	t, key, err := a.Tenants.Create(ctx, tenant.NewTenant{Slug: "acme", Name: "Acme Corporation", Plan: "pro"})
	if errors.Is(err, tenant.ErrSlugTaken) {
		t, err = tenantBySlug(ctx, a, "acme")
		return t, "", err
	}
	if err != nil {
		return tenant.Tenant{}, "", fmt.Errorf("seed demo tenant: %w", err)
	}
	for _, p := range []inventory.NewProduct{
		{SKU: "ANVIL-1", Name: "Anvil", Price: 4999, Currency: "EUR", Stock: 25},
		{SKU: "ROCKET-SKATES", Name: "Rocket skates", Price: 12900, Currency: "EUR", Stock: 10},
		{SKU: "BIRDSEED-5KG", Name: "Bird seed, 5 kg", Price: 1299, Currency: "EUR", Stock: 200},
	} {
		if _, err := a.Inventory.Create(ctx, t.ID, p); err != nil {
			return tenant.Tenant{}, "", fmt.Errorf("seed demo product %s: %w", p.SKU, err)
		}
	}
	return t, key, nil
}

func tenantBySlug(ctx context.Context, a *app.App, slug string) (tenant.Tenant, error) {
	const pageSize = 500
	for after := uuid.Nil; ; {
		page, err := a.Tenants.List(ctx, after, pageSize)
		if err != nil {
			return tenant.Tenant{}, err
		}
		for _, t := range page {
			if t.Slug == slug {
				return t, nil
			}
			after = t.ID
		}
		if len(page) < pageSize {
			return tenant.Tenant{}, fmt.Errorf("tenant %s: %w", slug, tenant.ErrNotFound)
		}
	}
}

// trustIdP registers the development identity provider in t's
// settings.oidc, as a tenant admin would with PATCH /v1/tenant: its issuer,
// the audience devIdPClientID, and sign-up on first sign-in for
// devIdPJITDomain with devIdPJITRole. A tenant that registered another
// provider (an acme kept from an earlier run) keeps it; trustIdP then
// reports false.
func trustIdP(ctx context.Context, a *app.App, t tenant.Tenant, issuer string) (bool, error) {
	if o := t.Settings.OIDC; o != nil && o.Audience != devIdPClientID {
		return false, nil
	}
	patch, err := json.Marshal(map[string]any{"oidc": tenant.OIDC{Issuer: issuer, Audience: devIdPClientID,
		JITEmailDomains: []string{devIdPJITDomain}, JITDefaultRole: devIdPJITRole}})
	if err != nil {
		return false, err
	}
	seeder := identity.Principal{Kind: identity.KindOperator, TenantID: t.ID, TenantSlug: t.Slug,
		Subject: "tenantd-dev", Roles: []string{"admin"}}
	if _, err := a.Tenants.UpdateSelf(ctx, seeder, tenant.SelfChange{Settings: tenant.SettingsPatch(patch)}, nil); err != nil {
		return false, fmt.Errorf("register the dev identity provider for %s: %w", t.Slug, err)
	}
	return true, nil
}

func printWelcome(e env, cfg config.Config, adminKey string, idp *devidp.Provider, trusted bool) {
	w := e.stdout
	base := "http://" + cfg.HTTPAddr
	if host, port, err := net.SplitHostPort(cfg.HTTPAddr); err == nil && (host == "" || host == "0.0.0.0") {
		base = "http://127.0.0.1:" + port
	}
	fmt.Fprintf(w, "\ntenantd dev is starting on %s\n\n", base)
	fmt.Fprintf(w, "  operator key (PLATFORM_API_KEY): %s\n", cfg.PlatformAPIKey)
	if adminKey == "" {
		fmt.Fprintf(w, "  demo tenant acme exists already; its admin key was shown when it was created\n")
	} else {
		fmt.Fprintf(w, "  demo tenant acme, admin API key: %s\n", adminKey)
	}
	if idp != nil {
		fmt.Fprintf(w, "  dev identity provider (issuer): %s\n", idp.Issuer())
		if !trusted {
			fmt.Fprintf(w, "  acme keeps the identity provider it registered; it does not trust this one\n")
		}
	}
	fmt.Fprintln(w)
	if adminKey != "" {
		fmt.Fprintf(w, "Try:\n")
		fmt.Fprintf(w, "  export KEY=%s\n", adminKey)
		fmt.Fprintf(w, "  curl -s %s/v1/products -H \"Authorization: Bearer $KEY\"\n", base)
		fmt.Fprintf(w, "  curl -s %s/v1/products -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \\\n    -d '{\"sku\":\"TNT-1\",\"name\":\"TNT\",\"price\":999,\"currency\":\"EUR\",\"stock\":5}'\n", base)
		fmt.Fprintf(w, "  curl -s %s/admin/v1/tenants -H \"Authorization: Bearer %s\"\n\n", base, cfg.PlatformAPIKey)
	}
	if idp != nil && trusted {
		fmt.Fprintf(w, "Sign in to acme as anyone@%s (a %s on first sign-in) with an ID token of the dev identity provider:\n", devIdPJITDomain, devIdPJITRole)
		fmt.Fprintf(w, "  export TOKEN=$(curl -s '%s%s?email=%s')\n", idp.Issuer(), devidp.TokenPath, devExampleEmail)
		fmt.Fprintf(w, "  curl -s %s/v1/products -H \"Authorization: Bearer $TOKEN\"\n\n", base)
	}
	fmt.Fprintf(w, "Ctrl-C stops tenantd and removes the throw-away servers.\n\n")
}
