package billing_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/billing"
	"github.com/tenantd/tenantd/internal/db"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
)

// billingServer serves the billing routes the way the app mounts them: the
// tenant routes on /v1 behind a permission check, the operator routes on
// /admin/v1. Authentication is stood in for by test headers (X-Test-Tenant,
// X-Test-Permissions, X-Test-Operator); the app's own tests cover the real
// chain.
func billingServer(t *testing.T, d *db.DB) *httptest.Server {
	t.Helper()
	gin.SetMode(gin.TestMode)
	e := gin.New()
	table := &httpx.Table{}
	h := billing.NewHandler(billing.NewReporter(d), billing.NewExporter(d))

	authn := func(c *gin.Context) {
		p := identity.Principal{Kind: identity.KindAPIKey, Subject: "test"}
		if c.GetHeader("X-Test-Operator") != "" {
			p = identity.Principal{Kind: identity.KindOperator, Subject: "operator"}
		} else if id, err := uuid.Parse(c.GetHeader("X-Test-Tenant")); err == nil {
			p.TenantID = id
		} else {
			httpx.Fail(c, fault.Unauthenticated, "a credential is required")
			return
		}
		c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
		c.Next()
	}
	authorize := func(permission string) gin.HandlerFunc {
		return func(c *gin.Context) {
			p, _ := identity.FromContext(c.Request.Context())
			granted := p.Kind == identity.KindOperator && permission == "platform:operate" ||
				p.Kind != identity.KindOperator && strings.Contains(","+c.GetHeader("X-Test-Permissions")+",", ","+permission+",")
			if !granted {
				httpx.Fail(c, fault.Forbidden, "missing permission "+permission)
				return
			}
			c.Next()
		}
	}
	known := func(p string) bool { return p == "usage:read" || p == "platform:operate" }
	h.Routes(httpx.NewRouter(e.Group("/v1", authn), table, authorize, known))
	h.AdminRoutes(httpx.NewRouter(e.Group("/admin/v1", authn), table, authorize, known), "platform:operate")

	want := []httpx.Route{
		{Method: "GET", Path: "/admin/v1/billing/exports/:id/download", Permission: "platform:operate"},
		{Method: "POST", Path: "/admin/v1/billing/exports", Permission: "platform:operate"},
		{Method: "GET", Path: "/admin/v1/usage", Permission: "platform:operate"},
		{Method: "GET", Path: "/v1/usage", Permission: "usage:read"},
	}
	got := table.Routes()
	if len(got) != len(want) {
		t.Fatalf("got routes %v, want %v", got, want)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("got routes %v, want them to include %v", got, w)
		}
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

func call(t *testing.T, method, url string, headers map[string]string, body string) httpResult {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}
}

func wantProblem(t *testing.T, r httpResult, status int, code string) {
	t.Helper()
	var p struct {
		Code   string `json:"code"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || r.status != status || p.Code != code {
		t.Errorf("got %d %s, want %d %s", r.status, r.body, status, code)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("got Content-Type %q, want application/problem+json", ct)
	}
}

// TestUsageHTTP covers GET /v1/usage and GET /admin/v1/usage.
func TestUsageHTTP(t *testing.T) {
	t.Parallel()
	f := newUsageFixture(t)
	srv := billingServer(t, f.app)
	tenant := testenv.NewTenant(t, testenv.WithPlan("pro")).ID
	insertCount(t, f.owner, tenant, "api_requests", "", "2026-06-02T10:00:00Z", "2026-06", 5_002_001)
	insertCount(t, f.owner, tenant, "payment_volume", "EUR", "2026-06-02T10:00:00Z", "2026-06", 42)
	now := time.Now().UTC()
	insertCount(t, f.owner, tenant, "orders_created", "", now.Truncate(time.Hour).Format(time.RFC3339), now.Format("2006-01"), 3)
	asTenant := map[string]string{"X-Test-Tenant": tenant.String(), "X-Test-Permissions": "usage:read"}

	t.Run("a period", func(t *testing.T) {
		r := call(t, "GET", srv.URL+"/v1/usage?period=2026-06", asTenant, "")
		if r.status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", r.status, r.body)
		}
		var got billing.UsageResponse
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Period != "2026-06" || got.Plan != "pro" || len(got.Meters) != 4 {
			t.Fatalf("got %s, want period 2026-06, plan pro, 4 meters", r.body)
		}
		want := `{"meter":"api_requests","currency":null,"used":5002001,"included":5000000,"remaining":0,"overage":2001,"overage_amount":30,"price_currency":"EUR","hard_limit":false,"resets_at":"2026-07-01T00:00:00Z"}`
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("got %s, want it to contain %s", r.body, want)
		}
		if !bytes.Contains(r.body, []byte(`{"meter":"payment_volume","currency":"EUR","used":42,`)) {
			t.Errorf("got %s, want payment_volume in EUR", r.body)
		}
	})
	t.Run("the current month by default", func(t *testing.T) {
		r := call(t, "GET", srv.URL+"/v1/usage", asTenant, "")
		var got billing.UsageResponse
		if err := json.Unmarshal(r.body, &got); err != nil || r.status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", r.status, r.body)
		}
		if got.Period != now.Format("2006-01") {
			t.Errorf("got period %s, want %s", got.Period, now.Format("2006-01"))
		}
		for _, m := range got.Meters {
			if m.Meter == "orders_created" && m.Used != 3 {
				t.Errorf("got orders_created used %d, want 3", m.Used)
			}
		}
	})
	for _, bad := range []string{"2026-6", "2026-13", "june", "", "2026-06-01"} {
		t.Run("malformed period "+bad, func(t *testing.T) {
			wantProblem(t, call(t, "GET", srv.URL+"/v1/usage?period="+bad, asTenant, ""), http.StatusUnprocessableEntity, "validation_failed")
		})
	}
	t.Run("without usage:read", func(t *testing.T) {
		r := call(t, "GET", srv.URL+"/v1/usage", map[string]string{"X-Test-Tenant": tenant.String(), "X-Test-Permissions": "orders:read"}, "")
		wantProblem(t, r, http.StatusForbidden, "forbidden")
	})

	t.Run("admin report", func(t *testing.T) {
		start := newAdminBase()
		a := testenv.NewTenant(t, testenv.WithID(adminTenantID(start, 0x21)), testenv.WithPlan("free")).ID
		b := testenv.NewTenant(t, testenv.WithID(adminTenantID(start, 0x22)), testenv.WithPlan("pro")).ID
		insertCount(t, f.owner, b, "orders_created", "", "2026-05-02T10:00:00Z", "2026-05", 10_001)
		cursor := base64.RawURLEncoding.EncodeToString(start[:])
		asOperator := map[string]string{"X-Test-Operator": "yes"}
		r := call(t, "GET", srv.URL+"/admin/v1/usage?period=2026-05&limit=1&cursor="+cursor, asOperator, "")
		var page struct {
			Period string                        `json:"period"`
			Data   []billing.TenantUsageResponse `json:"data"`
			Next   *string                       `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil || r.status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", r.status, r.body)
		}
		if page.Period != "2026-05" || len(page.Data) != 1 || page.Data[0].TenantID != a || page.Next == nil {
			t.Fatalf("got %s, want tenant %s and a next cursor", r.body, a)
		}
		r = call(t, "GET", srv.URL+"/admin/v1/usage?period=2026-05&limit=1&cursor="+*page.Next, asOperator, "")
		if err := json.Unmarshal(r.body, &page); err != nil || r.status != http.StatusOK {
			t.Fatalf("got %d %s, want 200", r.status, r.body)
		}
		if len(page.Data) != 1 || page.Data[0].TenantID != b || page.Data[0].Plan != "pro" {
			t.Fatalf("got %s, want tenant %s", r.body, b)
		}
		for _, m := range page.Data[0].Meters {
			if m.Meter == "orders_created" && (m.Used != 10_001 || m.Overage != 1 || m.OverageAmount != 2) {
				t.Errorf("got %+v, want 10001 used, 1 over costing 2", m)
			}
		}
		wantProblem(t, call(t, "GET", srv.URL+"/admin/v1/usage?period=05-2026", asOperator, ""), http.StatusUnprocessableEntity, "validation_failed")
		wantProblem(t, call(t, "GET", srv.URL+"/admin/v1/usage?limit=500", asOperator, ""), http.StatusUnprocessableEntity, "validation_failed")
		wantProblem(t, call(t, "GET", srv.URL+"/admin/v1/usage", asTenant, ""), http.StatusForbidden, "forbidden")
	})
}

// TestExportHTTP covers POST /admin/v1/billing/exports and the download:
// the same bytes as the exporter, the same sha256 for the same period and
// format, headers that name the digest, 304 on a matching ETag, 409 once
// the stored lines changed.
func TestExportHTTP(t *testing.T) {
	t.Parallel()
	x := newGoldenDB(t)
	srv := billingServer(t, x.app)
	asOperator := map[string]string{"X-Test-Operator": "yes", "Content-Type": "application/json"}

	create := func(t *testing.T, body string) (billing.ExportResponse, httpResult) {
		t.Helper()
		r := call(t, "POST", srv.URL+"/admin/v1/billing/exports", asOperator, body)
		var got billing.ExportResponse
		if r.status == http.StatusCreated {
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
		}
		return got, r
	}
	for _, f := range []billing.Format{billing.FormatCSV, billing.FormatJSONL} {
		t.Run(string(f), func(t *testing.T) {
			x1, r := create(t, `{"period":"2026-09","format":"`+string(f)+`"}`)
			if r.status != http.StatusCreated {
				t.Fatalf("got %d %s, want 201", r.status, r.body)
			}
			x2, _ := create(t, `{"period":"2026-09","format":"`+string(f)+`"}`)
			if x1.SHA256 != x2.SHA256 || x1.Rows != x2.Rows || x1.ID == x2.ID {
				t.Errorf("got %+v then %+v, want two exports with the same sha256 and rows", x1, x2)
			}
			if x1.Period != "2026-09" || x1.Format != f || x1.Rows != 25 {
				t.Errorf("got %s, want period 2026-09, format %s, 25 rows", r.body, f)
			}
			if loc := r.header.Get("Location"); loc != "/admin/v1/billing/exports/"+x1.ID.String()+"/download" {
				t.Errorf("got Location %q, want the download", loc)
			}

			d := call(t, "GET", srv.URL+"/admin/v1/billing/exports/"+x1.ID.String()+"/download", asOperator, "")
			if d.status != http.StatusOK {
				t.Fatalf("download: got %d %s, want 200", d.status, d.body)
			}
			sum := sha256.Sum256(d.body)
			if got := hex.EncodeToString(sum[:]); got != x1.SHA256 {
				t.Errorf("download: got sha256 %s, want %s", got, x1.SHA256)
			}
			checkGolden(t, "export-2026-09."+string(f), d.body)
			wantHeaders := map[string]string{
				"Content-Type":        f.ContentType(),
				"Content-Disposition": `attachment; filename="tenantd-billing-2026-09.` + string(f) + `"`,
				"Content-Length":      strconv.Itoa(len(d.body)),
				"ETag":                `"` + x1.SHA256 + `"`,
				"Repr-Digest":         "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":",
			}
			for k, v := range wantHeaders {
				if got := d.header.Get(k); got != v {
					t.Errorf("download: got %s %q, want %q", k, got, v)
				}
			}
			cached := call(t, "GET", srv.URL+"/admin/v1/billing/exports/"+x1.ID.String()+"/download",
				map[string]string{"X-Test-Operator": "yes", "If-None-Match": `"` + x1.SHA256 + `"`}, "")
			if cached.status != http.StatusNotModified || len(cached.body) != 0 {
				t.Errorf("If-None-Match: got %d with %d bytes, want 304 and none", cached.status, len(cached.body))
			}
		})
	}

	t.Run("refusals", func(t *testing.T) {
		open := time.Now().UTC().Format("2006-01")
		for name, tc := range map[string]struct {
			body   string
			status int
			code   string
		}{
			"open period":    {`{"period":"` + open + `","format":"csv"}`, 422, "validation_failed"},
			"bad period":     {`{"period":"2026-9","format":"csv"}`, 422, "validation_failed"},
			"bad format":     {`{"period":"2026-09","format":"xlsx"}`, 422, "validation_failed"},
			"missing fields": {`{}`, 422, "validation_failed"},
			"unknown field":  {`{"period":"2026-09","format":"csv","provisional":true}`, 422, "validation_failed"},
		} {
			t.Run(name, func(t *testing.T) {
				_, r := create(t, tc.body)
				wantProblem(t, r, tc.status, tc.code)
			})
		}
		wantProblem(t, call(t, "GET", srv.URL+"/admin/v1/billing/exports/"+uuid.NewString()+"/download", asOperator, ""), 404, "not_found")
		wantProblem(t, call(t, "GET", srv.URL+"/admin/v1/billing/exports/nope/download", asOperator, ""), 422, "validation_failed")
		r := call(t, "POST", srv.URL+"/admin/v1/billing/exports", map[string]string{"X-Test-Tenant": uuid.NewString(), "X-Test-Permissions": "usage:read"}, `{"period":"2026-09","format":"csv"}`)
		wantProblem(t, r, http.StatusForbidden, "forbidden")
	})

	t.Run("stored lines changed", func(t *testing.T) {
		x1, r := create(t, `{"period":"2026-09","format":"csv"}`)
		if r.status != http.StatusCreated {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		// Erasing a tenant removes its lines: the issued bytes cannot be
		// reproduced, and the download says so instead of serving others.
		x.platformExec(t, "DELETE FROM tenants WHERE id = ?", uuid.MustParse(idAbb))
		d := call(t, "GET", srv.URL+"/admin/v1/billing/exports/"+x1.ID.String()+"/download", asOperator, "")
		wantProblem(t, d, http.StatusConflict, "conflict")
	})
}
