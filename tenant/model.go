package tenant

import (
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/fault"
)

// Status is a tenant's lifecycle state.
type Status string

// Tenant statuses.
const (
	Active    Status = "active"
	Suspended Status = "suspended"
)

// Tenant is one business sharing tenantd.
type Tenant struct {
	ID        uuid.UUID
	Slug      string
	Name      string
	Plan      string
	Status    Status
	Settings  Settings
	Version   int
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Settings are the tenant's own configuration.
type Settings struct {
	CORSOrigins []string `json:"cors_origins,omitempty"`
}

// Plan is a platform plan with its request rate and price.
type Plan struct {
	Name          string
	DisplayName   string
	RatePerSecond int
	Burst         int
	MonthlyPrice  int64
	Currency      string
}

// NewTenant is the input for creating a tenant.
type NewTenant struct {
	Slug string
	Name string
	Plan string
}

// Change is a partial update by an operator; nil fields stay as they are.
type Change struct {
	Name   *string
	Plan   *string
	Status *Status
}

// Sentinel errors.
var (
	ErrNotFound   = fault.New(fault.NotFound, "tenant not found")
	ErrSlugTaken  = fault.New(fault.Conflict, "a tenant with this slug already exists")
	ErrNoSuchPlan = fault.Invalid(fault.Field("plan", "must be one of free, pro, enterprise"))
	// ErrVersionMismatch means the tenant changed since the client read it.
	ErrVersionMismatch = fault.New(fault.PreconditionFailed, "the tenant has changed since it was read (If-Match does not match its ETag)")
)

// SelfChange is a tenant admin's partial update of its own tenant.
type SelfChange struct {
	Name     *string
	Settings *Settings
}

// Validate checks a tenant admin's change.
func (c *SelfChange) Validate() error {
	var f fault.Fields
	if c.Name != nil {
		*c.Name = strings.TrimSpace(*c.Name)
		validateName(&f, *c.Name)
	}
	if c.Settings != nil {
		if err := ValidateSettings(*c.Settings); err != nil {
			return err
		}
	}
	if c.Name == nil && c.Settings == nil {
		f.Add("body", "nothing to change: give name or settings")
	}
	return f.Err()
}

var slugPattern = regexp.MustCompile(`^[a-z0-9-]{3,40}$`)

// ValidSlug reports whether s is a well-formed slug: 3–40 of a-z, 0-9, -.
func ValidSlug(s string) bool { return slugPattern.MatchString(s) }

// Validate checks a new tenant's fields.
func (n *NewTenant) Validate() error {
	var f fault.Fields
	if !ValidSlug(n.Slug) {
		f.Add("slug", "must be 3 to 40 characters of a-z, 0-9 and -")
	}
	n.Name = strings.TrimSpace(n.Name)
	validateName(&f, n.Name)
	if n.Plan == "" {
		n.Plan = "free"
	}
	return f.Err()
}

// Validate checks an operator's change.
func (c *Change) Validate() error {
	var f fault.Fields
	if c.Name != nil {
		*c.Name = strings.TrimSpace(*c.Name)
		validateName(&f, *c.Name)
	}
	if c.Status != nil && *c.Status != Active && *c.Status != Suspended {
		f.Add("status", "must be active or suspended")
	}
	if c.Name == nil && c.Plan == nil && c.Status == nil {
		f.Add("body", "nothing to change: give name, plan or status")
	}
	return f.Err()
}

func validateName(f *fault.Fields, name string) {
	if n := utf8.RuneCountInString(name); n < 1 || n > 200 {
		f.Add("name", "must be 1 to 200 characters")
	}
}

// ValidateSettings checks settings a tenant admin sends.
func ValidateSettings(s Settings) error {
	var f fault.Fields
	if len(s.CORSOrigins) > 20 {
		f.Add("settings.cors_origins", "at most 20 origins")
	}
	for _, o := range s.CORSOrigins {
		if !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://") || len(o) > 200 {
			f.Add("settings.cors_origins", "each origin must be an http(s) origin of at most 200 characters")
			break
		}
	}
	return f.Err()
}
