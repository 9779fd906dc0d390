package tenant

import (
	"regexp"
	"strings"
	"time"
	"unicode"
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
	// BillingCustomerID is the tenant's customer at the billing provider
	// (a Stripe or Lago customer id), set by an operator; nil when unset.
	// Billing feeds (stripe-meter-events) address usage to it.
	BillingCustomerID *string
}

// Settings are the tenant's own configuration. PATCH /v1/tenant merges a
// change into them (SettingsPatch).
type Settings struct {
	CORSOrigins []string `json:"cors_origins,omitempty"`
	OIDC        *OIDC    `json:"oidc,omitempty"`
}

// OIDC registers the tenant's identity provider: tokens from Issuer whose
// audience contains Audience sign its members in.
type OIDC struct {
	Issuer     string `json:"issuer"`
	Audience   string `json:"audience"`
	RolesClaim string `json:"roles_claim,omitempty"`
	// Users whose verified email is in one of these domains join on first
	// sign-in with JITDefaultRole.
	JITEmailDomains []string `json:"jit_email_domains,omitempty"`
	JITDefaultRole  string   `json:"jit_default_role,omitempty"`
}

// IssuerChecker decides whether an issuer URL may be registered (and so
// fetched by the server).
type IssuerChecker interface {
	CheckIssuer(raw string) error
}

var (
	domainPattern = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	rolePattern   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,39}$`)
	claimPattern  = regexp.MustCompile(`^[A-Za-z0-9_:/.-]{1,100}$`)
)

func validateOIDC(f *fault.Fields, o *OIDC, issuers IssuerChecker) {
	o.Issuer = strings.TrimSpace(o.Issuer)
	o.Audience = strings.TrimSpace(o.Audience)
	if err := issuers.CheckIssuer(o.Issuer); err != nil {
		f.Add("settings.oidc.issuer", err.Error())
	}
	if l := len(o.Audience); l < 1 || l > 255 || hasControl(o.Audience) {
		f.Add("settings.oidc.audience", "must be 1 to 255 characters (your client id at the provider)")
	}
	if o.RolesClaim != "" && !claimPattern.MatchString(o.RolesClaim) {
		f.Add("settings.oidc.roles_claim", "must be a claim name of at most 100 characters")
	}
	if len(o.JITEmailDomains) > 20 {
		f.Add("settings.oidc.jit_email_domains", "at most 20 domains")
	}
	for i, d := range o.JITEmailDomains {
		o.JITEmailDomains[i] = strings.ToLower(strings.TrimSpace(d))
		if !domainPattern.MatchString(o.JITEmailDomains[i]) {
			f.Add("settings.oidc.jit_email_domains", "each must be a domain name such as example.com")
			break
		}
	}
	if o.JITDefaultRole != "" && !rolePattern.MatchString(o.JITDefaultRole) {
		f.Add("settings.oidc.jit_default_role", "must be a role name")
	}
	if len(o.JITEmailDomains) > 0 && o.JITDefaultRole == "" {
		f.Add("settings.oidc.jit_default_role", "is required with jit_email_domains")
	}
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
	// BillingCustomerID sets the billing provider's customer id; "" clears
	// it.
	BillingCustomerID *string
}

// Sentinel errors.
var (
	ErrNotFound   = fault.New(fault.NotFound, "tenant not found")
	ErrSlugTaken  = fault.New(fault.Conflict, "a tenant with this slug already exists")
	ErrNoSuchPlan = fault.Invalid(fault.Field("plan", "must be one of free, pro, enterprise"))
	// ErrIssuerTaken refuses to register an (issuer, audience) another
	// tenant registered: that tenant's members would need X-Tenant to
	// sign in. It does not say which tenant.
	ErrIssuerTaken = fault.New(fault.Conflict, "another tenant has registered this OIDC issuer and audience; register your own client (audience) at the provider")
	// ErrVersionMismatch means the tenant changed since the client read it.
	ErrVersionMismatch = fault.New(fault.PreconditionFailed, "the tenant has changed since it was read (If-Match does not match its ETag)")
)

// SelfChange is a tenant admin's partial update of its own tenant.
type SelfChange struct {
	Name *string
	// Settings, when not nil, is merged into the current settings.
	Settings SettingsPatch
}

// Validate checks a tenant admin's change; the settings it makes are
// checked once merged (ValidateSettings).
func (c *SelfChange) Validate() error {
	var f fault.Fields
	if c.Name != nil {
		*c.Name = strings.TrimSpace(*c.Name)
		validateName(&f, *c.Name)
	}
	if c.Name == nil && c.Settings == nil {
		f.Add("body", "nothing to change: give name or settings")
	}
	return f.Err()
}

var slugPattern = regexp.MustCompile(`^[a-z0-9-]{3,40}$`)

var billingCustomerPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$`)

// ValidBillingCustomerID reports whether s is a well-formed customer id of a
// billing provider (Stripe's cus_…, a Lago or OpenMeter external id): 1 to
// 200 characters of letters, digits and _ - . : @ /, starting with a letter
// or digit, so it goes into CSV, JSON and URLs unescaped.
func ValidBillingCustomerID(s string) bool { return billingCustomerPattern.MatchString(s) }

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
	if c.BillingCustomerID != nil && *c.BillingCustomerID != "" && !ValidBillingCustomerID(*c.BillingCustomerID) {
		f.Add("billing_customer_id", "must be 1 to 200 characters of A-Z, a-z, 0-9 and _ - . : @ /, starting with a letter or digit (\"\" clears it)")
	}
	if c.Name == nil && c.Plan == nil && c.Status == nil && c.BillingCustomerID == nil {
		f.Add("body", "nothing to change: give name, plan, status or billing_customer_id")
	}
	return f.Err()
}

func validateName(f *fault.Fields, name string) {
	if n := utf8.RuneCountInString(name); n < 1 || n > 200 || hasControl(name) {
		f.Add("name", "must be 1 to 200 characters, without control characters")
	}
}

// hasControl reports whether s holds a control character (tab and line
// breaks included): one-line text refuses them all.
func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

// ValidateSettings checks settings a tenant admin sends.
func ValidateSettings(s Settings, issuers IssuerChecker) error {
	var f fault.Fields
	if s.OIDC != nil {
		validateOIDC(&f, s.OIDC, issuers)
	}
	if len(s.CORSOrigins) > 20 {
		f.Add("settings.cors_origins", "at most 20 origins")
	}
	for _, o := range s.CORSOrigins {
		if !strings.HasPrefix(o, "https://") && !strings.HasPrefix(o, "http://") || len(o) > 200 || hasControl(o) || strings.ContainsRune(o, ' ') {
			f.Add("settings.cors_origins", "each origin must be an http(s) origin of at most 200 characters")
			break
		}
	}
	return f.Err()
}
