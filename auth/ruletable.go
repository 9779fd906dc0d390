package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	"gorm.io/gorm"
)

// ruleTable is the Casbin adapter of tenantd: it reads and writes the
// casbin_rule table (migration 0002, in github.com/casbin/gorm-adapter's
// layout: ptype, v0…v5, an empty string for an unused field) through the
// *gorm.DB it wraps, so that a change runs in the caller's transaction,
// under its policy lock and with its tenant set, as migration 0018
// requires of every write. It needs nothing but PostgreSQL, where
// gorm-adapter linked the MySQL, SQL Server and SQLite drivers into the
// binary for its other databases.
//
// It is always filtered: tenantd loads one tenant's rules (or a batch of
// tenants'), never the whole table, so Casbin must neither load every rule
// when an enforcer is created nor save a policy over the table.
type ruleTable struct {
	db *gorm.DB
}

var (
	_ persist.FilteredAdapter = (*ruleTable)(nil)
	_ persist.BatchAdapter    = (*ruleTable)(nil)
)

// ruleFields is how many rule fields casbin_rule has (v0 to v5).
const ruleFields = 6

// domainFilter is the filter ruleTable.LoadFilteredPolicy takes: the p
// rules whose domain (v1) is one of these tenant ids.
type domainFilter []string

// ruleRow is one row of casbin_rule.
type ruleRow struct {
	Ptype, V0, V1, V2, V3, V4, V5 string
}

// fields returns the row's ptype and fields without trailing empty ones,
// the line persist.LoadPolicyArray expects.
func (r ruleRow) fields() []string {
	line := []string{r.Ptype, r.V0, r.V1, r.V2, r.V3, r.V4, r.V5}
	n := len(line)
	for n > 1 && line[n-1] == "" {
		n--
	}
	return line[:n]
}

const selectRules = `SELECT ptype, v0, v1, v2, v3, v4, v5 FROM ` + policyTable

// LoadPolicy loads every rule of the table into m.
func (a *ruleTable) LoadPolicy(m model.Model) error {
	return a.load(m, selectRules+` ORDER BY id`)
}

// LoadFilteredPolicy loads the rules filter (a domainFilter) selects
// into m.
func (a *ruleTable) LoadFilteredPolicy(m model.Model, filter any) error {
	domains, ok := filter.(domainFilter)
	if !ok {
		return fmt.Errorf("casbin_rule: unsupported filter type %T", filter)
	}
	return a.load(m, selectRules+` WHERE ptype = 'p' AND v1 IN ? ORDER BY id`, []string(domains))
}

func (a *ruleTable) load(m model.Model, query string, args ...any) error {
	var rows []ruleRow
	if err := a.db.Raw(query, args...).Scan(&rows).Error; err != nil {
		return fmt.Errorf("casbin_rule: load: %w", err)
	}
	for _, row := range rows {
		if err := persist.LoadPolicyArray(row.fields(), m); err != nil {
			return fmt.Errorf("casbin_rule: load %v: %w", row.fields(), err)
		}
	}
	return nil
}

// IsFiltered reports true: see ruleTable.
func (a *ruleTable) IsFiltered() bool { return true }

// errWholePolicy refuses what would replace the whole table.
var errWholePolicy = errors.New("casbin_rule: saving a whole policy is not supported; change rules one by one")

// SavePolicy refuses: tenantd never holds the whole policy.
func (a *ruleTable) SavePolicy(model.Model) error { return errWholePolicy }

// AddPolicy inserts one rule; a rule already stored is left as it is.
func (a *ruleTable) AddPolicy(_, ptype string, rule []string) error {
	return a.AddPolicies("", ptype, [][]string{rule})
}

// AddPolicies inserts rules with one statement; rules already stored are
// left as they are.
func (a *ruleTable) AddPolicies(_, ptype string, rules [][]string) error {
	if len(rules) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO ` + policyTable + ` (ptype, v0, v1, v2, v3, v4, v5) VALUES `)
	args := make([]any, 0, len(rules)*(1+ruleFields))
	for i, rule := range rules {
		if len(rule) > ruleFields {
			return fmt.Errorf("casbin_rule: a rule has at most %d fields, got %v", ruleFields, rule)
		}
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, ?, ?, ?, ?, ?)")
		args = append(args, ptype)
		for f := range ruleFields {
			v := ""
			if f < len(rule) {
				v = rule[f]
			}
			args = append(args, v)
		}
	}
	q.WriteString(" ON CONFLICT DO NOTHING")
	if err := a.db.Exec(q.String(), args...).Error; err != nil {
		return fmt.Errorf("casbin_rule: add %d rules: %w", len(rules), err)
	}
	return nil
}

// RemovePolicy deletes one rule.
func (a *ruleTable) RemovePolicy(_, ptype string, rule []string) error {
	return a.RemovePolicies("", ptype, [][]string{rule})
}

// RemovePolicies deletes rules, one statement each.
func (a *ruleTable) RemovePolicies(_, ptype string, rules [][]string) error {
	for _, rule := range rules {
		if err := a.remove(ptype, 0, rule); err != nil {
			return err
		}
	}
	return nil
}

// RemoveFilteredPolicy deletes the rules whose fields from fieldIndex on
// equal fieldValues; an empty value matches any.
func (a *ruleTable) RemoveFilteredPolicy(_, ptype string, fieldIndex int, fieldValues ...string) error {
	return a.remove(ptype, fieldIndex, fieldValues)
}

// remove deletes the rules of ptype whose fields from the first on equal
// values, an empty value matching any (gorm-adapter's matching). At least
// one value must be set: none would delete every rule of ptype.
func (a *ruleTable) remove(ptype string, first int, values []string) error {
	if first < 0 || first+len(values) > ruleFields {
		return fmt.Errorf("casbin_rule: remove: fields %d to %d are outside v0 to v%d", first, first+len(values)-1, ruleFields-1)
	}
	q := `DELETE FROM ` + policyTable + ` WHERE ptype = ?`
	args := []any{ptype}
	for i, v := range values {
		if v != "" {
			q += fmt.Sprintf(" AND v%d = ?", first+i)
			args = append(args, v)
		}
	}
	if len(args) == 1 {
		return errors.New("casbin_rule: remove: every value is empty")
	}
	if err := a.db.Exec(q, args...).Error; err != nil {
		return fmt.Errorf("casbin_rule: remove: %w", err)
	}
	return nil
}
