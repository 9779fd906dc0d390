package app_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/apptest"
	"github.com/tenantd/tenantd/internal/audit"
	"github.com/tenantd/tenantd/internal/testenv"
)

// TestAuditTrail proves, through the real chain, that security events and
// every mutating request land in the tenant's audit trail with who, what
// and from where; that reads are not recorded; that bursts of failed
// authentications with a tenant's key are; and that the server's sealer
// links them into a chain that verifies.
func TestAuditTrail(t *testing.T) {
	s, tn := apptest.NewWithTenant(t, "audit", "pro")
	other := s.NewTenant("audit-other", "pro")
	hdr := map[string]string{"User-Agent": "audit-e2e/1", "X-Request-ID": "audit-req-1"}

	created := s.Do(apptest.Request{Method: "POST", Path: "/v1/api-keys", Key: tn.Key, Header: hdr,
		Body: map[string]any{"name": "ci", "roles": []string{"viewer"}}})
	if created.Status != http.StatusCreated {
		t.Fatalf("create key: got %d %s", created.Status, created.Body)
	}
	keyID := created.Map(t)["id"].(string)
	secret := created.Map(t)["secret"].(string)
	if resp := s.Do(apptest.Request{Method: "DELETE", Path: "/v1/api-keys/" + keyID, Key: tn.Key}); resp.Status != http.StatusNoContent {
		t.Fatalf("revoke key: got %d %s", resp.Status, resp.Body)
	}
	if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/roles", Key: tn.Key,
		Body: map[string]any{"name": "reporting", "permissions": []string{"usage:read"}}}); resp.Status != http.StatusCreated {
		t.Fatalf("create role: got %d %s", resp.Status, resp.Body)
	}
	if resp := s.Do(apptest.Request{Method: "POST", Path: "/v1/products", Key: tn.Key,
		Body: map[string]any{"sku": "A-1", "name": "A", "price": 100, "currency": "EUR", "stock": -1}}); resp.Status != http.StatusUnprocessableEntity {
		t.Fatalf("invalid product: got %d %s, want 422", resp.Status, resp.Body)
	}
	s.Do(apptest.Request{Method: "GET", Path: "/v1/products", Key: tn.Key})
	// The revoked key, ten times: a burst against this tenant.
	for range 10 {
		if resp := s.Do(apptest.Request{Method: "GET", Path: "/v1/tenant", Key: secret}); resp.Status != http.StatusUnauthorized {
			t.Fatalf("revoked key: got %d, want 401", resp.Status)
		}
	}

	// The server's sealer links the entries into the chain within moments
	// of their commits; until then they are listed unsealed.
	var (
		list apptest.Response
		page struct{ Data []audit.EventResponse }
	)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		list = s.Do(apptest.Request{Method: "GET", Path: "/v1/audit-events?limit=200", Key: tn.Key})
		if list.Status != http.StatusOK {
			t.Fatalf("list: got %d %s", list.Status, list.Body)
		}
		page.Data = nil
		list.JSON(t, &page)
		for _, e := range page.Data {
			if !e.Sealed || e.Seq == nil || e.Hash == nil || e.PrevHash == nil {
				return false, "every entry sealed"
			}
		}
		return true, "every entry sealed"
	})
	for i, e := range page.Data {
		if want := int64(len(page.Data) - i); *e.Seq != want {
			t.Errorf("entry %d (newest first): got seq %d, want %d", i, *e.Seq, want)
		}
	}
	var got []string
	for i := len(page.Data) - 1; i >= 0; i-- {
		e := page.Data[i]
		got = append(got, e.Action+" "+e.Resource)
	}
	want := []string{
		"api_key.created api_key:", // the tenant's initial admin key, by the operator
		"api_key.created api_key:" + keyID,
		"POST /v1/api-keys /v1/api-keys",
		"api_key.revoked api_key:" + keyID,
		"DELETE /v1/api-keys/:id /v1/api-keys/" + keyID,
		"role.created role:reporting",
		"POST /v1/roles /v1/roles",
		"POST /v1/products /v1/products",
		"auth.failed_burst tenant:" + tn.ID,
	}
	if len(got) != len(want) {
		t.Fatalf("got events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("event %d: got %q, want %q", i+1, got[i], want[i])
		}
	}
	// byAction returns the oldest event with action.
	byAction := func(action string) audit.EventResponse {
		for i := len(page.Data) - 1; i >= 0; i-- {
			if e := page.Data[i]; e.Action == action {
				return e
			}
		}
		t.Fatalf("no %s event", action)
		return audit.EventResponse{}
	}
	if e := byAction("api_key.created"); e.Actor != "operator:operator-key" {
		t.Errorf("initial key: got actor %q, want operator:operator-key", e.Actor)
	}
	if e := byAction("POST /v1/api-keys"); e.RequestID != "audit-req-1" || e.UserAgent != "audit-e2e/1" || e.IP == nil || *e.IP != "127.0.0.1" ||
		!strings.HasPrefix(e.Actor, "api_key:") || string(e.Summary) != `{"fields":["name","roles"],"phase":"commit"}` {
		t.Errorf("got request entry %+v (summary %s), want request id, user agent, 127.0.0.1, the admin key, field names only", e, e.Summary)
	}
	if e := byAction("POST /v1/products"); e.Status != 422 || !strings.Contains(string(e.Summary), `"phase":"response"`) {
		t.Errorf("got %+v (summary %s), want status 422 in phase response", e, e.Summary)
	}
	if strings.Contains(string(list.Body), "tk_") {
		t.Errorf("the audit trail holds a key secret: %s", list.Body)
	}
	if slices.ContainsFunc(page.Data, func(e audit.EventResponse) bool { return strings.HasPrefix(e.Action, "GET ") }) {
		t.Error("got a GET request in the audit trail, want none")
	}

	// The other tenant sees only its own initial key.
	var otherPage struct{ Data []audit.EventResponse }
	s.Do(apptest.Request{Method: "GET", Path: "/v1/audit-events", Key: other.Key}).JSON(t, &otherPage)
	if len(otherPage.Data) != 1 || otherPage.Data[0].Action != "api_key.created" {
		t.Errorf("other tenant: got %d events, want its initial key's only", len(otherPage.Data))
	}

	r, err := audit.Verify(t.Context(), s.Env.OpenDB(t, 2), uuid.MustParse(tn.ID))
	if err != nil || !r.OK() || r.Events != int64(len(want)) {
		t.Errorf("verify: got %+v, error %v; want %d events, intact", r, err, len(want))
	}
}
