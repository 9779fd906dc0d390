package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/audit"
	eventlog "github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/openapi"
	"github.com/tenantd/tenantd/internal/testenv"
)

// listPage is the body of GET /v1/audit-events.
type listPage struct {
	Data       []audit.EventResponse `json:"data"`
	NextCursor *string               `json:"next_cursor"`
}

// TestListEvents proves GET /v1/audit-events filters, pages newest first,
// refuses malformed filters with 422, needs audit:read, and shows only the
// caller's tenant; and that each event's hash can be recomputed from the
// fields it returns.
func TestListEvents(t *testing.T) {
	t.Parallel()
	gin.SetMode(gin.TestMode)
	env := testenv.Get(t)
	app := env.OpenDB(t, 4)
	a, b := testenv.NewTenant(t), testenv.NewTenant(t)

	alice := actingCtx(context.Background(), a.ID, "alice")
	bob := identity.WithPrincipal(alice, identity.Principal{Kind: identity.KindUser, TenantID: a.ID, Subject: "bob"})
	record(t, app, alice, a.ID, audit.Entry{Action: "api_key.created", Resource: "api_key:1", Summary: map[string]any{"after": map[string]any{"roles": []string{"viewer"}}}})
	record(t, app, alice, a.ID, audit.Entry{Action: "api_key.created", Resource: "api_key:2"})
	record(t, app, bob, a.ID, audit.Entry{Action: "member.added", Resource: "member:1"})
	time.Sleep(5 * time.Millisecond) // the point: mid falls strictly between the entries
	mid := time.Now().UTC()
	time.Sleep(5 * time.Millisecond) // the point: mid falls strictly between the entries
	record(t, app, alice, a.ID, audit.Entry{Action: "api_key.created", Resource: "api_key:3"})
	record(t, app, bob, a.ID, audit.Entry{Action: "member.added", Resource: "member:2"})
	record(t, app, alice, a.ID, audit.Entry{Action: "POST /v1/things", Resource: "/v1/things_1%", Status: 201})
	record(t, app, actingCtx(context.Background(), b.ID, "carol"), b.ID, audit.Entry{Action: "api_key.created", Resource: "api_key:9"})
	waitSealed(t, app, a.ID)
	waitSealed(t, app, b.ID)

	aud := audit.New(app, testenv.Logger(), audit.Options{})
	e := gin.New()
	e.ContextWithFallback = true
	v1 := e.Group("/v1", func(c *gin.Context) {
		p := identity.Principal{Kind: identity.KindAPIKey, TenantID: uuid.MustParse(c.GetHeader(apptest.TenantHeader)),
			Subject: "reader", Roles: strings.Split(c.GetHeader("X-Test-Roles"), ",")}
		c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
		c.Next()
	})
	authorize := func(perm string) gin.HandlerFunc {
		return func(c *gin.Context) {
			p, _ := identity.FromContext(c.Request.Context())
			if !slices.Contains(p.Roles, "auditor") {
				httpx.Fail(c, fault.Forbidden, "lacks "+perm)
				return
			}
			c.Next()
		}
	}
	cursors, err := eventlog.NewCursors([]byte("audit-http-test-cursor-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	audit.NewHandler(aud, cursors).Routes(httpx.NewRouter(v1, &httpx.Table{}, authorize, func(p string) bool { return p == audit.Permission }))

	get := func(t *testing.T, tenantID uuid.UUID, roles, query string) (int, []byte) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/v1/audit-events?"+query, nil)
		req.Header.Set(apptest.TenantHeader, tenantID.String())
		req.Header.Set("X-Test-Roles", roles)
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		return w.Code, w.Body.Bytes()
	}
	// list gets a page as an auditor, wanting 200, and returns its events'
	// seqs and its next cursor.
	list := func(t *testing.T, tenantID uuid.UUID, query string) ([]int64, *string) {
		t.Helper()
		code, body := get(t, tenantID, "auditor", query)
		if code != http.StatusOK {
			t.Fatalf("got %d %s, want 200", code, body)
		}
		var p listPage
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		out := []int64{}
		for _, d := range p.Data {
			out = append(out, seqOf(t, d))
		}
		return out, p.NextCursor
	}
	seqs := func(t *testing.T, tenantID uuid.UUID, query string) []int64 {
		t.Helper()
		out, _ := list(t, tenantID, query)
		return out
	}

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			query string
			want  []int64
		}{
			{"", []int64{6, 5, 4, 3, 2, 1}},
			{"actor=user:bob", []int64{5, 3}},
			{"actor=user:nobody", []int64{}},
			{"action=api_key.created", []int64{4, 2, 1}},
			{"action=" + url.QueryEscape("api_key.*"), []int64{4, 2, 1}},
			{"action=" + url.QueryEscape("member*"), []int64{5, 3}},
			{"action=api_key", []int64{}},
			{"resource=member:1", []int64{3}},
			{"resource=" + url.QueryEscape("api_key:*"), []int64{4, 2, 1}},
			// LIKE metacharacters in a prefix match only themselves.
			{"resource=" + url.QueryEscape("/v1/things_1%*"), []int64{6}},
			{"resource=" + url.QueryEscape("/v1/things%*"), []int64{}},
			{"since=" + mid.Format(time.RFC3339Nano), []int64{6, 5, 4}},
			{"until=" + mid.Format(time.RFC3339Nano), []int64{3, 2, 1}},
			{"actor=api_key:alice&action=" + url.QueryEscape("api_key.*") + "&since=" + mid.Format(time.RFC3339Nano), []int64{4}},
			{"since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z", []int64{}},
		}
		for _, tt := range tests {
			t.Run(tt.query, func(t *testing.T) {
				if got := seqs(t, a.ID, tt.query); !slices.Equal(got, tt.want) {
					t.Errorf("got seqs %v, want %v", got, tt.want)
				}
			})
		}
	})

	t.Run("pages", func(t *testing.T) {
		var got [][]int64
		query := "limit=4"
		for range 5 {
			page, next := list(t, a.ID, query)
			got = append(got, page)
			if next == nil {
				break
			}
			query = "limit=4&cursor=" + *next
		}
		want := [][]int64{{6, 5, 4, 3}, {2, 1}}
		if !slices.EqualFunc(got, want, slices.Equal[[]int64]) {
			t.Errorf("got pages %v, want %v", got, want)
		}
		// Exactly a page's worth: no next page.
		code, body := get(t, a.ID, "auditor", "limit=6")
		var p listPage
		if err := json.Unmarshal(body, &p); err != nil || code != 200 || len(p.Data) != 6 || p.NextCursor != nil {
			t.Errorf("limit=6: got %d, %d events, next_cursor %v; want 200, 6 events, null", code, len(p.Data), p.NextCursor)
		}
	})

	t.Run("malformed filters", func(t *testing.T) {
		tests := []struct {
			query      string
			wantFields []string
		}{
			{"limit=0", []string{"limit"}},
			{"limit=201", []string{"limit"}},
			{"limit=ten", []string{"limit"}},
			{"cursor=not-a-cursor", []string{"cursor"}},
			{"cursor=AAAAAAAAAAA", []string{"cursor"}},
			// A cursor of the seq-ordered list (seq 3) is refused, not misread.
			{"cursor=AAAAAAAAAAM", []string{"cursor"}},
			{"cursor=AAAAAAAAAAAB", []string{"cursor"}}, // nine bytes, another version
			{"since=yesterday", []string{"since"}},
			{"until=2026-13-01T00:00:00Z", []string{"until"}},
			{"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", []string{"until"}},
			{"actor=", []string{"actor"}},
			{"action=" + strings.Repeat("a", 201), []string{"action"}},
			{"limit=0&since=x&resource=", []string{"limit", "resource", "since"}},
		}
		for _, tt := range tests {
			t.Run(tt.query[:min(len(tt.query), 40)], func(t *testing.T) {
				code, body := get(t, a.ID, "auditor", tt.query)
				var p httpx.Problem
				if err := json.Unmarshal(body, &p); err != nil {
					t.Fatal(err)
				}
				var fields []string
				for _, f := range p.Errors {
					fields = append(fields, f.Field)
				}
				slices.Sort(fields)
				if code != http.StatusUnprocessableEntity || p.Code != fault.Validation || !slices.Equal(fields, tt.wantFields) {
					t.Errorf("got %d %s fields %v, want 422 %s fields %v", code, p.Code, fields, fault.Validation, tt.wantFields)
				}
			})
		}
	})

	t.Run("needs audit:read", func(t *testing.T) {
		if code, body := get(t, a.ID, "viewer", ""); code != http.StatusForbidden {
			t.Errorf("got %d %s, want 403", code, body)
		}
	})

	t.Run("only the caller's tenant", func(t *testing.T) {
		if got := seqs(t, b.ID, ""); !slices.Equal(got, []int64{1}) {
			t.Errorf("got seqs %v as tenant B, want [1]", got)
		}
	})

	t.Run("hashes recomputable from the response", func(t *testing.T) {
		code, body := get(t, a.ID, "auditor", "")
		var p listPage
		if err := json.Unmarshal(body, &p); err != nil || code != 200 {
			t.Fatalf("got %d %s, want 200", code, body)
		}
		for _, d := range p.Data {
			ip := ""
			if d.IP != nil {
				ip = *d.IP
			}
			if !d.Sealed || d.PrevHash == nil || d.Hash == nil {
				t.Fatalf("got event %+v, want it sealed with its hashes", d)
			}
			prev, err := hex.DecodeString(*d.PrevHash)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			h.Write(prev)
			for _, f := range []string{"tenantd.audit.v1", a.ID.String(), strconv.FormatInt(*d.Seq, 10), d.ID.String(),
				d.OccurredAt.UTC().Format(time.RFC3339Nano), d.Actor, d.Action, d.Resource, strconv.Itoa(d.Status),
				string(d.Summary), d.RequestID, ip, d.UserAgent} {
				h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f))))
				h.Write([]byte(f))
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != *d.Hash {
				t.Errorf("seq %d: recomputed hash %s, want %s", *d.Seq, got, *d.Hash)
			}
		}
		first := p.Data[len(p.Data)-1]
		if seqOf(t, first) != 1 || first.IP == nil || *first.IP != "203.0.113.7" || first.UserAgent != "test-agent/1.0" ||
			first.RequestID != "req-alice" || string(first.Summary) != `{"after":{"roles":["viewer"]}}` || first.Status != 0 {
			t.Errorf("got seq 1 %+v (summary %s), want its recorded fields", first, first.Summary)
		}
	})
}

// seqOf is a sealed event's seq.
func seqOf(t *testing.T, e audit.EventResponse) int64 {
	t.Helper()
	if !e.Sealed || e.Seq == nil {
		t.Fatalf("got event %s unsealed (seq %v), want it sealed", e.ID, e.Seq)
	}
	return *e.Seq
}

// TestEventResponseMatchesOpenAPI proves sealed and unsealed events, as the
// API answers them, match the AuditEvent schema of the OpenAPI document.
func TestEventResponseMatchesOpenAPI(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		t.Fatal(err)
	}
	schema := doc.Components.Schemas["AuditEvent"]
	if schema == nil {
		t.Fatal("no AuditEvent schema")
	}
	base := audit.Event{TenantID: uuid.New(), Position: 7, ID: uuid.New(), OccurredAt: time.Now(), Actor: "system",
		Action: "x.y", Summary: json.RawMessage(`{"phase":"commit"}`)}
	sealed := base
	sealed.Seq, sealed.PrevHash, sealed.Hash, sealed.IP = 1, make([]byte, 32), make([]byte, 32), "192.0.2.1"
	for name, e := range map[string]audit.Event{"sealed": sealed, "unsealed": base} {
		t.Run(name, func(t *testing.T) {
			body, err := json.Marshal(audit.ToResponse(e))
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatal(err)
			}
			if err := schema.Value.VisitJSON(v, openapi3.EnableFormatValidation()); err != nil {
				t.Errorf("%s: %v", body, err)
			}
		})
	}
}
