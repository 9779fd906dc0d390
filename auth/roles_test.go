package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/tenantd/tenantd/auth"
	"github.com/tenantd/tenantd/internal/fault"
	"github.com/tenantd/tenantd/internal/httpx"
	"github.com/tenantd/tenantd/internal/identity"
	"github.com/tenantd/tenantd/internal/testenv"
	"github.com/tenantd/tenantd/middleware"
)

func TestCreateRoleValidation(t *testing.T) {
	r := newReplica(t, replicaOptions(t), false)
	tenant := testenv.NewTenant(t).ID
	many := make([]string, 101)
	for i := range many {
		many[i] = "orders:read"
	}
	tests := []struct {
		name       string
		role       auth.Role
		wantCode   fault.Code
		wantFields []string
	}{
		{"one character", auth.Role{Name: "a", Permissions: []string{"orders:read"}}, fault.Validation, []string{"name"}},
		{"upper case", auth.Role{Name: "Auditor", Permissions: []string{"orders:read"}}, fault.Validation, []string{"name"}},
		{"leading digit", auth.Role{Name: "1auditor", Permissions: []string{"orders:read"}}, fault.Validation, []string{"name"}},
		{"space", auth.Role{Name: "audit team", Permissions: []string{"orders:read"}}, fault.Validation, []string{"name"}},
		{"41 characters", auth.Role{Name: "a" + strings.Repeat("b", 40), Permissions: []string{"orders:read"}}, fault.Validation, []string{"name"}},
		{"no permissions", auth.Role{Name: "auditor"}, fault.Validation, []string{"permissions"}},
		{"unknown permission", auth.Role{Name: "auditor", Permissions: []string{"orders:read", "orders:fly"}}, fault.Validation, []string{"permissions"}},
		{"permission of another form", auth.Role{Name: "auditor", Permissions: []string{"orders"}}, fault.Validation, []string{"permissions"}},
		{"too many listed", auth.Role{Name: "auditor", Permissions: many}, fault.Validation, []string{"permissions"}},
		{"bad name and permission", auth.Role{Name: "-x", Permissions: []string{"x:y"}}, fault.Validation, []string{"name", "permissions"}},
		{"built-in name", auth.Role{Name: "viewer", Permissions: []string{"orders:read"}}, fault.Conflict, nil},
		{"two characters", auth.Role{Name: "a1", Permissions: []string{"orders:read"}}, "", nil},
		{"40 characters", auth.Role{Name: "a" + strings.Repeat("b", 39), Permissions: []string{"orders:read"}}, "", nil},
		{"dashes and underscores", auth.Role{Name: "ops_team-2", Permissions: []string{"orders:read"}}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.CreateRole(context.Background(), as(tenant, "admin"), tt.role)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			code, fields := testenv.FaultFields(err)
			fields = slices.Compact(fields) // a field blamed once per wrong value counts once
			if code != tt.wantCode || !slices.Equal(fields, tt.wantFields) {
				t.Fatalf("got %s %v (%v), want %s %v", code, fields, err, tt.wantCode, tt.wantFields)
			}
		})
	}
}

func TestRoleLifecycle(t *testing.T) {
	r := newReplica(t, replicaOptions(t), false)
	ctx := context.Background()
	tenant := testenv.NewTenant(t).ID
	admin := as(tenant, "admin")
	auditor := as(tenant, "auditor")

	roles, err := r.ListRoles(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if got := roleNames(roles); !slices.Equal(got, []string{"admin", "billing", "clerk", "viewer"}) {
		t.Fatalf("new tenant's roles: got %v, want the built-in ones", got)
	}
	for _, role := range roles {
		if !role.Builtin || !slices.Equal(sorted(role.Permissions), sorted(auth.BuiltinRoles[role.Name])) {
			t.Errorf("built-in %s: got %v builtin=%v, want %v", role.Name, role.Permissions, role.Builtin, auth.BuiltinRoles[role.Name])
		}
	}

	created, err := r.CreateRole(ctx, admin, auth.Role{Name: "auditor", Permissions: []string{"orders:read", "audit:read", "orders:read"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"orders:read", "audit:read"}; !slices.Equal(created.Permissions, want) || created.Builtin {
		t.Fatalf("created: got %+v, want permissions %v in contract order", created, want)
	}
	if _, err := r.CreateRole(ctx, admin, auth.Role{Name: "auditor", Permissions: []string{"usage:read"}}); fault.CodeOf(err) != fault.Conflict {
		t.Fatalf("second create: got %v, want conflict", err)
	}
	checkAllowed(t, r, auditor, map[string]bool{"audit:read": true, "orders:read": true, "orders:write": false, "usage:read": false})
	if ok, err := r.RoleExists(ctx, tenant, "auditor"); err != nil || !ok {
		t.Fatalf("RoleExists: got %v %v, want true", ok, err)
	}

	if _, err := r.UpdateRole(ctx, admin, "auditor", []string{"usage:read"}, `"stale"`); fault.CodeOf(err) != fault.PreconditionFailed {
		t.Fatalf("update with a stale If-Match: got %v, want precondition_failed", err)
	}
	updated, err := r.UpdateRole(ctx, admin, "auditor", []string{"usage:read", "orders:read"}, created.ETag())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"orders:read", "usage:read"}; !slices.Equal(updated.Permissions, want) {
		t.Fatalf("updated: got %v, want %v", updated.Permissions, want)
	}
	if updated.ETag() == created.ETag() {
		t.Error("ETag did not change with the permissions")
	}
	checkAllowed(t, r, auditor, map[string]bool{"audit:read": false, "orders:read": true, "usage:read": true})
	roles, err = r.ListRoles(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	if got := roleNames(roles); !slices.Equal(got, []string{"admin", "auditor", "billing", "clerk", "viewer"}) {
		t.Fatalf("roles: got %v", got)
	}
	if i := slices.IndexFunc(roles, func(r auth.Role) bool { return r.Name == "auditor" }); !slices.Equal(roles[i].Permissions, updated.Permissions) || roles[i].Builtin {
		t.Fatalf("listed auditor: got %+v, want %v", roles[i], updated.Permissions)
	}

	errs := []struct {
		what string
		err  error
		want fault.Code
	}{
		{"update a built-in role", second(r.UpdateRole(ctx, admin, "clerk", []string{"orders:read"}, "")), fault.Conflict},
		{"delete a built-in role", r.DeleteRole(ctx, admin, "admin"), fault.Conflict},
		{"update a missing role", second(r.UpdateRole(ctx, admin, "ghost", []string{"orders:read"}, "")), fault.NotFound},
		{"update to no permissions", second(r.UpdateRole(ctx, admin, "auditor", nil, "")), fault.Validation},
		{"update to an unknown permission", second(r.UpdateRole(ctx, admin, "auditor", []string{"root:all"}, "")), fault.Validation},
	}
	for _, e := range errs {
		if got := fault.CodeOf(e.err); got != e.want {
			t.Errorf("%s: got %s (%v), want %s", e.what, got, e.err, e.want)
		}
	}

	if err := r.DeleteRole(ctx, admin, "auditor"); err != nil {
		t.Fatal(err)
	}
	checkAllowed(t, r, auditor, map[string]bool{"orders:read": false, "usage:read": false})
	if ok, err := r.RoleExists(ctx, tenant, "auditor"); err != nil || ok {
		t.Fatalf("RoleExists after delete: got %v %v, want false", ok, err)
	}
	if err := r.DeleteRole(ctx, admin, "auditor"); fault.CodeOf(err) != fault.NotFound {
		t.Fatalf("second delete: got %v, want not_found", err)
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func second[T any](_ T, err error) error { return err }

func roleNames(roles []auth.Role) []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = r.Name
	}
	return out
}

func checkAllowed(t *testing.T, r replica, p identity.Principal, want map[string]bool) {
	t.Helper()
	for perm, w := range want {
		if got := r.Allowed(context.Background(), p, perm); got != w {
			t.Errorf("%v %s: got %v, want %v", p.Roles, perm, got, w)
		}
	}
}

func TestRoleDomainIsolation(t *testing.T) {
	r := newReplica(t, replicaOptions(t), false)
	ctx := context.Background()
	a, b := testenv.NewTenant(t).ID, testenv.NewTenant(t).ID
	mustCreate(t, r, a, "ops", "orders:write")

	if ok, err := r.RoleExists(ctx, b, "ops"); err != nil || ok {
		t.Fatalf("RoleExists in b: got %v %v, want false", ok, err)
	}
	checkAllowed(t, r, as(b, "ops"), map[string]bool{"orders:write": false})
	checkAllowed(t, r, as(a, "ops"), map[string]bool{"orders:write": true})
	if err := r.DeleteRole(ctx, as(b, "admin"), "ops"); fault.CodeOf(err) != fault.NotFound {
		t.Fatalf("b deletes a's role: got %v, want not_found", err)
	}
	if _, err := r.UpdateRole(ctx, as(b, "admin"), "ops", []string{"orders:read"}, ""); fault.CodeOf(err) != fault.NotFound {
		t.Fatalf("b updates a's role: got %v, want not_found", err)
	}
	perms, err := r.PermissionsOf(ctx, b, []string{"ops"})
	if err != nil || len(perms) != 0 {
		t.Fatalf("PermissionsOf in b: got %v %v, want none", perms, err)
	}

	// b's own role of the same name is independent.
	mustCreate(t, r, b, "ops", "products:read")
	checkAllowed(t, r, as(a, "ops"), map[string]bool{"orders:write": true, "products:read": false})
	checkAllowed(t, r, as(b, "ops"), map[string]bool{"orders:write": false, "products:read": true})

	removed, err := r.DeleteTenantRoles(ctx, b)
	if err != nil || removed != 1 {
		t.Fatalf("DeleteTenantRoles(b): got %d %v, want 1 rule", removed, err)
	}
	checkAllowed(t, r, as(b, "ops"), map[string]bool{"products:read": false})
	checkAllowed(t, r, as(a, "ops"), map[string]bool{"orders:write": true})
}

func TestRoleEscalation(t *testing.T) {
	r := newReplica(t, replicaOptions(t), false)
	ctx := context.Background()
	tenant := testenv.NewTenant(t).ID
	mustCreate(t, r, tenant, "role-admin", "roles:read", "roles:write", "products:read")
	mustCreate(t, r, tenant, "refunds", "products:read", "payments:refund")
	manager := as(tenant, "role-admin")

	tests := []struct {
		name string
		do   func() error
		want fault.Code // "" for success
	}{
		{"create within own permissions", func() error {
			_, err := r.CreateRole(ctx, manager, auth.Role{Name: "catalog", Permissions: []string{"products:read"}})
			return err
		}, ""},
		{"create with a permission the creator lacks", func() error {
			_, err := r.CreateRole(ctx, manager, auth.Role{Name: "sneaky", Permissions: []string{"products:read", "orders:write"}})
			return err
		}, fault.Forbidden},
		{"add a permission the changer lacks", func() error {
			_, err := r.UpdateRole(ctx, manager, "catalog", []string{"products:read", "payments:refund"}, "")
			return err
		}, fault.Forbidden},
		{"grow the changer's own role", func() error {
			_, err := r.UpdateRole(ctx, manager, "role-admin", []string{"roles:read", "roles:write", "products:read", "members:write"}, "")
			return err
		}, fault.Forbidden},
		{"take away a permission the changer lacks", func() error {
			_, err := r.UpdateRole(ctx, manager, "refunds", []string{"products:read"}, "")
			return err
		}, fault.Forbidden},
		{"delete a role with a permission the deleter lacks", func() error { return r.DeleteRole(ctx, manager, "refunds") }, fault.Forbidden},
		{"take away a permission the changer holds", func() error {
			_, err := r.UpdateRole(ctx, as(tenant, "role-admin", "refunds"), "refunds", []string{"products:read"}, "")
			return err
		}, ""},
		{"unknown role names add nothing", func() error {
			_, err := r.CreateRole(ctx, as(tenant, "role-admin", "ghost"), auth.Role{Name: "ghostly", Permissions: []string{"orders:read"}})
			return err
		}, fault.Forbidden},
		{"built-in and custom roles together", func() error {
			_, err := r.CreateRole(ctx, as(tenant, "role-admin", "clerk"), auth.Role{Name: "desk", Permissions: []string{"orders:write", "products:read"}})
			return err
		}, ""},
		{"delete a role with permissions the deleter lacks", func() error { return r.DeleteRole(ctx, manager, "desk") }, fault.Forbidden},
		{"delete a role whose permissions the deleter holds", func() error { return r.DeleteRole(ctx, as(tenant, "role-admin", "clerk"), "desk") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			if got := fault.CodeOf(err); got != tt.want {
				t.Fatalf("got %s (%v), want %s", got, err, tt.want)
			}
		})
	}
	if ok, _ := r.RoleExists(ctx, tenant, "sneaky"); ok {
		t.Error("a refused role was created")
	}
	if ok, _ := r.RoleExists(ctx, tenant, "refunds"); !ok {
		t.Error("a refused deletion deleted the role")
	}
	checkAllowed(t, r, as(tenant, "catalog"), map[string]bool{"products:read": true, "payments:refund": false})
	checkAllowed(t, r, manager, map[string]bool{"members:write": false})
	checkAllowed(t, r, as(tenant, "refunds"), map[string]bool{"payments:refund": false, "products:read": true})
}

func TestAllowedUnionOfRoles(t *testing.T) {
	r := newReplica(t, replicaOptions(t), false)
	ctx := context.Background()
	tenant := testenv.NewTenant(t).ID
	mustCreate(t, r, tenant, "reporting", "usage:read", "audit:read")

	tests := []struct {
		name  string
		p     identity.Principal
		perm  string
		allow bool
	}{
		{"built-in part of the union", as(tenant, "clerk", "reporting"), "products:read", true},
		{"custom part of the union", as(tenant, "clerk", "reporting"), "audit:read", true},
		{"neither grants", as(tenant, "clerk", "reporting"), "members:write", false},
		{"unknown role alone", as(tenant, "ghost"), "orders:read", false},
		{"unknown role beside a real one", as(tenant, "ghost", "reporting"), "usage:read", true},
		{"no roles", as(tenant), "orders:read", false},
		{"admin", as(tenant, "admin"), "audit:read", true},
		{"viewer lacks audit:read", as(tenant, "viewer"), "audit:read", false},
		{"unknown permission", as(tenant, "admin"), "orders:fly", false},
		{"no tenant", as(uuid.Nil, "admin"), "orders:read", false},
		{"role of another tenant", as(uuid.New(), "reporting"), "usage:read", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Allowed(ctx, tt.p, tt.perm); got != tt.allow {
				t.Fatalf("got %v, want %v", got, tt.allow)
			}
		})
	}
	perms, err := r.PermissionsOf(ctx, tenant, []string{"billing", "reporting", "ghost"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"usage:read": true, "payments:read": true, "tenant:read": true, "audit:read": true}
	if len(perms) != len(want) {
		t.Fatalf("PermissionsOf: got %v, want %v", perms, want)
	}
	for p := range want {
		if !perms[p] {
			t.Errorf("PermissionsOf: missing %s in %v", p, perms)
		}
	}
}

// rolesAPI serves the role routes behind the real authorization middleware;
// a test header stands in for authentication.
type rolesAPI struct {
	t      *testing.T
	url    string
	tenant uuid.UUID
}

func newRolesAPI(t *testing.T, r replica) rolesAPI {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	tenant := testenv.NewTenant(t).ID
	v1 := e.Group("/v1", func(c *gin.Context) {
		p := as(tenant, strings.Split(c.GetHeader("X-Test-Roles"), ",")...)
		c.Request = c.Request.WithContext(identity.WithPrincipal(c.Request.Context(), p))
		c.Next()
	})
	auth.NewRolesHandler(r.RBAC).Routes(httpx.NewRouter(v1, &httpx.Table{}, middleware.Authorize(r.RBAC), auth.KnownPermission))
	s := httptest.NewServer(e)
	t.Cleanup(s.Close)
	return rolesAPI{t: t, url: s.URL, tenant: tenant}
}

type apiResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r apiResponse) code() string {
	var p struct{ Code string }
	if err := json.Unmarshal(r.body, &p); err != nil {
		return ""
	}
	return p.Code
}

func (a rolesAPI) do(method, path, roles string, body any, header ...string) apiResponse {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("X-Test-Roles", roles)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return apiResponse{status: resp.StatusCode, header: resp.Header, body: data}
}

func TestRolesHTTP(t *testing.T) {
	r := newReplica(t, replicaOptions(t), false)
	api := newRolesAPI(t, r)
	auditor := map[string]any{"name": "auditor", "permissions": []string{"audit:read", "orders:read"}}

	created := api.do("POST", "/v1/roles", "admin", auditor)
	tests := []struct {
		name     string
		resp     apiResponse
		status   int
		code     string
		contains string
	}{
		{"create", created, 201, "", `"permissions":["orders:read","audit:read"]`},
		{"create without roles:write", api.do("POST", "/v1/roles", "viewer", map[string]any{"name": "x1", "permissions": []string{"orders:read"}}), 403, "forbidden", ""},
		{"create a duplicate", api.do("POST", "/v1/roles", "admin", auditor), 409, "conflict", ""},
		{"create a built-in name", api.do("POST", "/v1/roles", "admin", map[string]any{"name": "viewer", "permissions": []string{"orders:read"}}), 409, "conflict", ""},
		{"create with an unknown field", api.do("POST", "/v1/roles", "admin", `{"name":"x2","permissions":["orders:read"],"admin":true}`), 422, "validation_failed", `"field":"admin"`},
		{"create with an unknown permission", api.do("POST", "/v1/roles", "admin", map[string]any{"name": "x3", "permissions": []string{"orders:delete"}}), 422, "validation_failed", `"field":"permissions"`},
		{"create with a bad name", api.do("POST", "/v1/roles", "admin", map[string]any{"name": "X", "permissions": []string{"orders:read"}}), 422, "validation_failed", `"field":"name"`},
		{"create with permissions of the wrong type", api.do("POST", "/v1/roles", "admin", `{"name":"x4","permissions":"orders:read"}`), 422, "validation_failed", ""},
		{"list as viewer", api.do("GET", "/v1/roles", "viewer", nil), 200, "", `{"name":"auditor","permissions":["orders:read","audit:read"],"builtin":false}`},
		{"list through a custom role", api.do("GET", "/v1/roles", "auditor", nil), 403, "forbidden", ""},
		{"update with a stale If-Match", api.do("PATCH", "/v1/roles/auditor", "admin", map[string]any{"permissions": []string{"usage:read"}}, "If-Match", `"0000"`), 412, "precondition_failed", ""},
		{"update a built-in role", api.do("PATCH", "/v1/roles/admin", "admin", map[string]any{"permissions": []string{"usage:read"}}), 409, "conflict", ""},
		{"update with an unknown field", api.do("PATCH", "/v1/roles/auditor", "admin", `{"permissions":["usage:read"],"name":"x"}`), 422, "validation_failed", ""},
		{"update a missing role", api.do("PATCH", "/v1/roles/ghost", "admin", map[string]any{"permissions": []string{"usage:read"}}), 404, "not_found", ""},
		{"delete a built-in role", api.do("DELETE", "/v1/roles/clerk", "admin", nil), 409, "conflict", ""},
		{"delete a missing role", api.do("DELETE", "/v1/roles/ghost", "admin", nil), 404, "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.resp.status != tt.status || tt.resp.code() != tt.code || !strings.Contains(string(tt.resp.body), tt.contains) {
				t.Fatalf("got %d %s, want %d %q containing %s", tt.resp.status, tt.resp.body, tt.status, tt.code, tt.contains)
			}
			if tt.status >= 400 && tt.resp.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type: got %q, want application/problem+json", tt.resp.header.Get("Content-Type"))
			}
		})
	}

	// A role with roles:write but nothing else cannot hand out more.
	if resp := api.do("POST", "/v1/roles", "admin", map[string]any{"name": "role-admin", "permissions": []string{"roles:read", "roles:write"}}); resp.status != 201 {
		t.Fatalf("create role-admin: got %d %s", resp.status, resp.body)
	}
	if resp := api.do("POST", "/v1/roles", "role-admin", map[string]any{"name": "x5", "permissions": []string{"orders:write"}}); resp.status != 403 || resp.code() != "forbidden" {
		t.Fatalf("escalation: got %d %s, want 403 forbidden", resp.status, resp.body)
	}
	if resp := api.do("GET", "/v1/roles", "role-admin", nil); resp.status != 200 {
		t.Fatalf("list through a custom role with roles:read: got %d %s, want 200", resp.status, resp.body)
	}

	etag := created.header.Get("ETag")
	updated := api.do("PATCH", "/v1/roles/auditor", "admin", map[string]any{"permissions": []string{"usage:read"}}, "If-Match", etag)
	if updated.status != 200 || !strings.Contains(string(updated.body), `"permissions":["usage:read"]`) || updated.header.Get("ETag") == etag {
		t.Fatalf("update: got %d %s ETag %s, want 200 with usage:read and a new ETag", updated.status, updated.body, updated.header.Get("ETag"))
	}
	if resp := api.do("DELETE", "/v1/roles/auditor", "admin", nil); resp.status != 204 || len(resp.body) != 0 {
		t.Fatalf("delete: got %d %s, want 204", resp.status, resp.body)
	}
	if resp := api.do("DELETE", "/v1/roles/auditor", "admin", nil); resp.status != 404 {
		t.Fatalf("delete again: got %d, want 404", resp.status)
	}
}
