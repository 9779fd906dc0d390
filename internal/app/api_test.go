package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/config"
	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestOperatorTenantLifecycle covers /admin/v1: creation with a one-time
// admin key, validation, listing, reading, plan and status changes.
func TestOperatorTenantLifecycle(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	op := func(method, path string, body any) apptest.Response {
		return s.Do(apptest.Request{Method: method, Path: path, Key: apptest.OperatorKey, Body: body})
	}
	sl := apptest.Slug("life")
	created := op("POST", "/admin/v1/tenants", map[string]string{"slug": sl, "name": "Life Ltd", "plan": "pro"})
	if created.Status != 201 {
		t.Fatalf("create: got %d %s, want 201", created.Status, created.Body)
	}
	m := created.Map(t)
	id := m["id"].(string)
	if key, _ := m["admin_api_key"].(string); !strings.HasPrefix(key, "tk_") || m["plan"] != "pro" || m["status"] != "active" {
		t.Fatalf("create: got %s, want admin_api_key tk_…, plan pro, status active", created.Body)
	}
	if created.Header.Get("Location") != "/admin/v1/tenants/"+id {
		t.Fatalf("Location: got %q", created.Header.Get("Location"))
	}
	// The admin key works and has role admin.
	if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant", Key: m["admin_api_key"].(string)}); resp.Status != 200 || resp.Map(t)["slug"] != sl {
		t.Fatalf("GET /v1/tenant with the admin key: got %d %s", resp.Status, resp.Body)
	}

	cases := []struct {
		name       string
		method     string
		path       string
		body       any
		wantStatus int
		wantCode   string
		wantField  string
	}{
		{"duplicate slug", "POST", "/admin/v1/tenants", map[string]string{"slug": sl, "name": "Again"}, 409, "conflict", ""},
		{"slug too short", "POST", "/admin/v1/tenants", map[string]string{"slug": "ab", "name": "X"}, 422, "validation_failed", "slug"},
		{"slug with capitals", "POST", "/admin/v1/tenants", map[string]string{"slug": "Acme", "name": "X"}, 422, "validation_failed", "slug"},
		{"slug too long", "POST", "/admin/v1/tenants", map[string]string{"slug": strings.Repeat("a", 41), "name": "X"}, 422, "validation_failed", "slug"},
		{"missing name", "POST", "/admin/v1/tenants", map[string]string{"slug": apptest.Slug("noname")}, 422, "validation_failed", "name"},
		{"unknown plan", "POST", "/admin/v1/tenants", map[string]string{"slug": apptest.Slug("plan"), "name": "X", "plan": "platinum"}, 422, "validation_failed", "plan"},
		{"unknown field", "POST", "/admin/v1/tenants", map[string]any{"slug": apptest.Slug("uf"), "name": "X", "owner": "me"}, 422, "validation_failed", "owner"},
		{"wrong type", "POST", "/admin/v1/tenants", map[string]any{"slug": 12, "name": "X"}, 422, "validation_failed", "slug"},
		{"get unknown", "GET", "/admin/v1/tenants/0190a0a0-0000-7000-8000-000000000000", nil, 404, "not_found", ""},
		{"get bad id", "GET", "/admin/v1/tenants/not-a-uuid", nil, 422, "validation_failed", "id"},
		{"bad status", "PATCH", "/admin/v1/tenants/" + id, map[string]string{"status": "deleted"}, 422, "validation_failed", "status"},
		{"bad plan", "PATCH", "/admin/v1/tenants/" + id, map[string]string{"plan": "gold"}, 422, "validation_failed", "plan"},
		{"empty patch", "PATCH", "/admin/v1/tenants/" + id, map[string]string{}, 422, "validation_failed", "body"},
		{"change plan", "PATCH", "/admin/v1/tenants/" + id, map[string]string{"plan": "enterprise"}, 200, "", ""},
		{"read", "GET", "/admin/v1/tenants/" + id, nil, 200, "", ""},
		{"plans", "GET", "/admin/v1/plans", nil, 200, "", ""},
		{"list", "GET", "/admin/v1/tenants?limit=1", nil, 200, "", ""},
		{"bad limit", "GET", "/admin/v1/tenants?limit=500", nil, 422, "validation_failed", "limit"},
		{"bad cursor", "GET", "/admin/v1/tenants?cursor=zzz", nil, 422, "validation_failed", "cursor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := op(tc.method, tc.path, tc.body)
			if resp.Status != tc.wantStatus || resp.Code() != tc.wantCode {
				t.Fatalf("got %d %q %s, want %d %q", resp.Status, resp.Code(), resp.Body, tc.wantStatus, tc.wantCode)
			}
			if tc.wantField != "" && !strings.Contains(string(resp.Body), `"field":"`+tc.wantField+`"`) {
				t.Fatalf("got %s, want an error naming field %q", resp.Body, tc.wantField)
			}
			if resp.Status >= 400 && resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("Content-Type: got %q, want application/problem+json", resp.Header.Get("Content-Type"))
			}
		})
	}

	t.Run("pagination walks every tenant once", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			s.NewTenant("page", "free")
		}
		seen := map[string]bool{}
		path := "/admin/v1/tenants?limit=2"
		for pages := 0; ; pages++ {
			resp := op("GET", path, nil)
			var page struct {
				Data []struct {
					ID string `json:"id"`
				} `json:"data"`
				NextCursor *string `json:"next_cursor"`
			}
			resp.JSON(t, &page)
			for _, d := range page.Data {
				if seen[d.ID] {
					t.Fatalf("tenant %s listed twice", d.ID)
				}
				seen[d.ID] = true
			}
			if page.NextCursor == nil {
				break
			}
			path = "/admin/v1/tenants?limit=2&cursor=" + *page.NextCursor
		}
		if len(seen) < 4 {
			t.Fatalf("got %d tenants, want at least 4", len(seen))
		}
	})

	t.Run("operator credentials", func(t *testing.T) {
		for _, tc := range []struct {
			key  string
			want int
		}{{"", 401}, {"wrong-operator-key-wrong-operator-key", 401}} {
			if resp := s.Do(apptest.Request{Method: "GET", Path: "/admin/v1/tenants", Key: tc.key}); resp.Status != tc.want {
				t.Fatalf("key %q: got %d, want %d", tc.key, resp.Status, tc.want)
			}
		}
		// The operator key is no tenant credential.
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: apptest.OperatorKey}); resp.Status != 401 {
			t.Fatalf("operator key on /v1: got %d, want 401", resp.Status)
		}
	})

	t.Run("no PLATFORM_API_KEY: operator routes do not exist", func(t *testing.T) {
		s := apptest.New(t, apptest.Options{Config: func(c *config.Config) { c.PlatformAPIKey = "" }})
		resp := s.Do(apptest.Request{Method: "GET", Path: "/admin/v1/tenants", Key: apptest.OperatorKey})
		if resp.Status != 404 {
			t.Fatalf("got %d, want 404", resp.Status)
		}
	})
}

// TestBadInput: a client's mistake is a 4xx problem naming the field, and
// nothing is written.
func TestBadInput(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "bad", "pro")
	post := func(body any, header map[string]string) apptest.Response {
		return s.Do(apptest.Request{Method: "POST", Path: "/v1/products", Key: a.Key, Body: body, Header: header})
	}
	valid := func() map[string]any {
		return map[string]any{"sku": "OK-1", "name": "Fine", "price": 100, "currency": "EUR", "stock": 1}
	}
	with := func(k string, v any) map[string]any {
		m := valid()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name       string
		body       any
		wantStatus int
		wantField  string
	}{
		{"malformed JSON", `{"sku": "A",`, 422, "body"},
		{"not an object", `[1,2]`, 422, "body"},
		{"empty body", ``, 422, "body"},
		{"trailing data", `{"sku":"A"} {}`, 422, "body"},
		{"unknown field", with("colour", "red"), 422, "colour"},
		{"price as string", with("price", "10"), 422, "price"},
		{"price as float", with("price", 10.5), 422, "price"},
		{"negative price", with("price", -1), 422, "price"},
		{"price overflows", `{"sku":"A","name":"B","price":99999999999999999999,"currency":"EUR","stock":1}`, 422, "price"},
		{"negative stock", with("stock", -5), 422, "stock"},
		{"missing sku", with("sku", nil), 422, "sku"},
		{"missing price", with("price", nil), 422, "price"},
		{"bad currency", with("currency", "euro"), 422, "currency"},
		{"long name", with("name", strings.Repeat("n", 201)), 422, "name"},
		{"long sku", with("sku", strings.Repeat("s", 65)), 422, "sku"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(tc.body, nil)
			if resp.Status != tc.wantStatus || resp.Code() != "validation_failed" {
				t.Fatalf("got %d %q %s, want %d validation_failed", resp.Status, resp.Code(), resp.Body, tc.wantStatus)
			}
			if !strings.Contains(string(resp.Body), `"field":"`+tc.wantField+`"`) {
				t.Fatalf("got %s, want the field %q named", resp.Body, tc.wantField)
			}
		})
	}
	t.Run("body over 1 MiB", func(t *testing.T) {
		big := `{"sku":"A","name":"` + strings.Repeat("x", 1<<20) + `"}`
		if resp := post(big, nil); resp.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d %s, want 413", resp.Status, resp.Body)
		}
	})
	t.Run("invalid UUID in path", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products/42", Key: a.Key})
		if resp.Status != 422 || !strings.Contains(string(resp.Body), `"field":"id"`) {
			t.Fatalf("got %d %s, want 422 naming id", resp.Status, resp.Body)
		}
	})
	t.Run("nothing was written", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: a.Key})
		if data := resp.Map(t)["data"].([]any); len(data) != 0 {
			t.Fatalf("got %d products, want 0", len(data))
		}
	})
	t.Run("unknown route", func(t *testing.T) {
		resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/nothing-here", Key: a.Key})
		if resp.Status != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("got %d %q, want 404 problem+json", resp.Status, resp.Header.Get("Content-Type"))
		}
	})
}

// TestPermissionsOfBuiltinRoles: a role without a route's permission gets 403.
func TestPermissionsOfBuiltinRoles(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "perm", "pro")
	viewer := s.CreateKey(a.Key, "viewer")
	billing := s.CreateKey(a.Key, "billing")
	clerk := s.CreateKey(a.Key, "clerk")
	body := map[string]any{"sku": "P-1", "name": "P", "price": 1, "currency": "EUR", "stock": 1}
	cases := []struct {
		name string
		key  string
		req  apptest.Request
		want int
	}{
		{"viewer reads products", viewer, apptest.Request{Method: "GET", Path: "/v1/products"}, 200},
		{"viewer cannot write products", viewer, apptest.Request{Method: "POST", Path: "/v1/products", Body: body}, 403},
		{"viewer cannot list keys' secrets but may read keys", viewer, apptest.Request{Method: "GET", Path: "/v1/api-keys"}, 200},
		{"billing cannot read products", billing, apptest.Request{Method: "GET", Path: "/v1/products"}, 403},
		{"billing reads the tenant", billing, apptest.Request{Method: "GET", Path: "/v1/tenant"}, 200},
		{"clerk cannot create keys", clerk, apptest.Request{Method: "POST", Path: "/v1/api-keys", Body: map[string]any{"name": "x", "roles": []string{"admin"}}}, 403},
		{"clerk cannot write the tenant", clerk, apptest.Request{Method: "PATCH", Path: "/v1/tenant", Body: map[string]any{"name": "x"}}, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Key = tc.key
			resp := s.Do(tc.req)
			if resp.Status != tc.want {
				t.Fatalf("got %d %s, want %d", resp.Status, resp.Body, tc.want)
			}
			if tc.want == 403 && resp.Code() != "forbidden" {
				t.Fatalf("code: got %q, want forbidden", resp.Code())
			}
		})
	}
}

// TestTenantSelf covers GET/PATCH /v1/tenant with ETag and If-Match.
func TestTenantSelf(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "self", "pro")
	got := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant", Key: a.Key})
	etag := got.Header.Get("ETag")
	if got.Status != 200 || etag == "" {
		t.Fatalf("GET: got %d etag %q", got.Status, etag)
	}
	patch := func(ifMatch string, body any) apptest.Response {
		h := map[string]string{}
		if ifMatch != "" {
			h["If-Match"] = ifMatch
		}
		return s.Do(apptest.Request{Method: "PATCH", Path: "/v1/tenant", Key: a.Key, Body: body, Header: h})
	}
	resp := patch(etag, map[string]any{"name": "Renamed", "settings": map[string]any{"cors_origins": []string{"https://shop.example"}}})
	if resp.Status != 200 || resp.Map(t)["name"] != "Renamed" || resp.Header.Get("ETag") == etag {
		t.Fatalf("PATCH: got %d %s etag %q", resp.Status, resp.Body, resp.Header.Get("ETag"))
	}
	if resp := patch(etag, map[string]any{"name": "Stale"}); resp.Status != 412 || resp.Code() != "precondition_failed" {
		t.Fatalf("stale If-Match: got %d %q, want 412 precondition_failed", resp.Status, resp.Code())
	}
	if resp := patch("", map[string]any{"settings": map[string]any{"cors_origins": []string{"ftp://x"}}}); resp.Status != 422 {
		t.Fatalf("bad origin: got %d, want 422", resp.Status)
	}
}

// TestOperationalRoutes: health, readiness and request ids.
func TestOperationalRoutes(t *testing.T) {
	s := apptest.New(t, apptest.Options{})
	if resp := s.Do(apptest.Request{Method: "GET", Path: "/healthz"}); resp.Status != 200 {
		t.Fatalf("healthz: got %d", resp.Status)
	}
	resp := s.Do(apptest.Request{Method: "GET", Path: "/readyz"})
	if resp.Status != 200 {
		t.Fatalf("readyz: got %d %s, want 200", resp.Status, resp.Body)
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Fatal("no X-Request-ID on the response")
	}
	resp = s.Do(apptest.Request{Method: "GET", Path: "/healthz", Header: map[string]string{"X-Request-ID": "client-id-123"}})
	if got := resp.Header.Get("X-Request-ID"); got != "client-id-123" {
		t.Fatalf("X-Request-ID: got %q, want the client's", got)
	}
	s.App.SetDraining()
	if resp := s.Do(apptest.Request{Method: "GET", Path: "/readyz"}); resp.Status != 503 {
		t.Fatalf("readyz while draining: got %d, want 503", resp.Status)
	}
}

// TestReadinessNamesTheFailedDependency stops Redis: /readyz answers 503 and
// says which check failed; it recovers when Redis is back.
func TestReadinessNamesTheFailedDependency(t *testing.T) {
	tests := []struct {
		name      string
		failOpen  bool
		want      int
		wantState string
	}{
		// Rate limits let requests through without Redis: still send traffic.
		{"rate limits fail open", true, 200, "degraded"},
		// Rate limits refuse every request without Redis: stop sending it.
		{"rate limits fail closed", false, 503, "not_ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := testenv.PrivateRedis(t)
			s := apptest.New(t, apptest.Options{RedisURL: rs.URL, Config: func(c *config.Config) { c.RateLimitFailOpen = tt.failOpen }})
			rs.Stop()
			resp := s.Do(apptest.Request{Method: "GET", Path: "/readyz"})
			if err := rs.Start(context.Background()); err != nil {
				t.Fatalf("restart redis: %v", err)
			}
			body := resp.Map(t)
			checks, _ := body["checks"].(map[string]any)
			if resp.Status != tt.want || checks["redis"] != "failing" || checks["postgres"] != "ok" {
				t.Fatalf("redis down: got %d %s, want %d with the redis check failing", resp.Status, resp.Body, tt.want)
			}
			if tt.want == 200 && body["status"] != tt.wantState {
				t.Errorf("redis down: got status %v, want %q", body["status"], tt.wantState)
			}
			if resp := s.Do(apptest.Request{Method: "GET", Path: "/readyz"}); resp.Status != 200 {
				t.Fatalf("redis back: got %d %s, want 200", resp.Status, resp.Body)
			}
		})
	}
}

// TestKeySecretsAreNeverStoredForReplay: creating an API key with an
// Idempotency-Key does not keep the one-time secret in the idempotency
// store; a retry is told the request was done.
func TestKeySecretsAreNeverStoredForReplay(t *testing.T) {
	s, a := apptest.NewWithTenant(t, "idem-key", "pro")
	req := apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: a.Key, Header: map[string]string{"Idempotency-Key": "k-1"},
		Body: map[string]any{"name": "ci", "roles": []string{"viewer"}}}
	first := s.Do(req)
	secret, _ := first.Map(t)["secret"].(string)
	if first.Status != 201 || secret == "" {
		t.Fatalf("create: got %d %s", first.Status, first.Body)
	}
	retry := s.Do(req)
	if retry.Status != 409 || strings.Contains(string(retry.Body), secret) || retry.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: got %d %s, want 409 without the secret", retry.Status, retry.Body)
	}
	owner := s.Env.OpenOwnerDB(t)
	var stored int64
	if err := owner.WithTenant(context.Background(), mustUUID(t, a.ID), func(tx *gorm.DB) error {
		return tx.Raw("SELECT count(*) FROM idempotency_keys WHERE position(? in convert_from(response_body, 'UTF8')) > 0", secret).Scan(&stored).Error
	}); err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Fatalf("the secret is stored in %d idempotency records", stored)
	}
}
