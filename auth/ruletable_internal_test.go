package auth

import (
	"slices"
	"testing"

	"github.com/casbin/casbin/v2/model"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/testenv"
)

// TestRuleTable runs the Casbin adapter against casbin_rule as the runtime
// role: rules round-trip in gorm-adapter's layout, a tenant's transaction
// writes and deletes its own domain's rules only (migration 0018), and
// requests that would touch more than asked are refused.
func TestRuleTable(t *testing.T) {
	d := testenv.Get(t).OpenDB(t, 2)
	ctx := t.Context()
	a, b := uuid.New(), uuid.New()
	rule := func(tenant uuid.UUID, role, obj, act string) []string {
		return []string{role, tenant.String(), obj, act}
	}
	loaded := func(t *testing.T, tenants ...uuid.UUID) [][]string {
		t.Helper()
		m, err := model.NewModelFromString(RBACModel)
		if err != nil {
			t.Fatal(err)
		}
		domains := make(domainFilter, len(tenants))
		for i, id := range tenants {
			domains[i] = id.String()
		}
		if err := (&ruleTable{db: d.Unscoped(ctx)}).LoadFilteredPolicy(m, domains); err != nil {
			t.Fatalf("LoadFilteredPolicy: %v", err)
		}
		return m["p"]["p"].Policy
	}
	inTenant := func(tenant uuid.UUID, fn func(a *ruleTable) error) error {
		return d.WithTenant(ctx, tenant, func(tx *gorm.DB) error { return fn(&ruleTable{db: tx}) })
	}

	if err := inTenant(a, func(rt *ruleTable) error {
		return rt.AddPolicies("p", "p", [][]string{rule(a, "clerk2", "orders", "read"), rule(a, "clerk2", "orders", "write")})
	}); err != nil {
		t.Fatalf("add tenant a's rules in its transaction: %v", err)
	}
	if err := inTenant(b, func(rt *ruleTable) error { return rt.AddPolicy("p", "p", rule(b, "clerk2", "orders", "read")) }); err != nil {
		t.Fatalf("add tenant b's rule in its transaction: %v", err)
	}

	t.Run("layout", func(t *testing.T) {
		var rows []struct{ Ptype, V0, V1, V2, V3, V4, V5 string }
		if err := d.Unscoped(ctx).Raw(`SELECT ptype, v0, v1, v2, v3, v4, v5 FROM casbin_rule WHERE v1 = ? ORDER BY id`, a.String()).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 {
			t.Fatalf("got %d rows of tenant a, want 2", len(rows))
		}
		for _, r := range rows {
			if r.Ptype != "p" || r.V0 != "clerk2" || r.V2 != "orders" || r.V4 != "" || r.V5 != "" {
				t.Errorf("got row %+v, want p, clerk2, a, orders, action, '', ''", r)
			}
		}
	})

	t.Run("filtered load", func(t *testing.T) {
		tests := []struct {
			name    string
			tenants []uuid.UUID
			want    [][]string
		}{
			{"one tenant", []uuid.UUID{a}, [][]string{rule(a, "clerk2", "orders", "read"), rule(a, "clerk2", "orders", "write")}},
			{"two tenants", []uuid.UUID{a, b}, [][]string{rule(a, "clerk2", "orders", "read"), rule(a, "clerk2", "orders", "write"), rule(b, "clerk2", "orders", "read")}},
			{"no rules", []uuid.UUID{uuid.New()}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if got := loaded(t, tt.tenants...); !slices.EqualFunc(got, tt.want, slices.Equal[[]string]) {
					t.Errorf("got %v, want %v", got, tt.want)
				}
			})
		}
	})

	t.Run("confined to the transaction's tenant", func(t *testing.T) {
		if err := inTenant(a, func(rt *ruleTable) error { return rt.AddPolicy("p", "p", rule(b, "intruder", "orders", "write")) }); err == nil {
			t.Error("tenant a's transaction added a rule in tenant b's domain: got no error, want a row-level security violation")
		}
		if err := inTenant(a, func(rt *ruleTable) error { return rt.RemoveFilteredPolicy("p", "p", 1, b.String()) }); err != nil {
			t.Fatalf("remove tenant b's rules in tenant a's transaction: %v", err)
		}
		if got := loaded(t, b); len(got) != 1 {
			t.Errorf("tenant b's rules after tenant a's transaction removed them: got %v, want the one rule", got)
		}
	})

	t.Run("refused", func(t *testing.T) {
		tests := []struct {
			name string
			do   func(rt *ruleTable) error
		}{
			{"remove with every value empty", func(rt *ruleTable) error { return rt.RemoveFilteredPolicy("p", "p", 0, "", "") }},
			{"remove past v5", func(rt *ruleTable) error { return rt.RemoveFilteredPolicy("p", "p", 5, "x", "y") }},
			{"remove before v0", func(rt *ruleTable) error { return rt.RemoveFilteredPolicy("p", "p", -1, "x") }},
			{"rule of seven fields", func(rt *ruleTable) error {
				return rt.AddPolicy("p", "p", []string{"r", a.String(), "o", "a", "4", "5", "6"})
			}},
			{"whole policy saved", func(rt *ruleTable) error { return rt.SavePolicy(model.Model{}) }},
			{"unknown filter", func(rt *ruleTable) error { return rt.LoadFilteredPolicy(model.Model{}, []string{a.String()}) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := inTenant(a, tt.do); err == nil {
					t.Error("got no error, want a refusal")
				}
			})
		}
		if got := loaded(t, a); len(got) != 2 {
			t.Errorf("tenant a's rules after the refusals: got %v, want its two rules", got)
		}
	})

	t.Run("remove", func(t *testing.T) {
		if err := inTenant(a, func(rt *ruleTable) error {
			return rt.RemovePolicy("p", "p", rule(a, "clerk2", "orders", "write"))
		}); err != nil {
			t.Fatal(err)
		}
		if got, want := loaded(t, a), [][]string{rule(a, "clerk2", "orders", "read")}; !slices.EqualFunc(got, want, slices.Equal[[]string]) {
			t.Errorf("after RemovePolicy: got %v, want %v", got, want)
		}
		if err := inTenant(a, func(rt *ruleTable) error { return rt.RemoveFilteredPolicy("p", "p", 1, a.String()) }); err != nil {
			t.Fatal(err)
		}
		if got := loaded(t, a); len(got) != 0 {
			t.Errorf("after RemoveFilteredPolicy of the domain: got %v, want none", got)
		}
	})
}
