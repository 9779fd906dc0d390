package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/fault"
)

// Billing feeds: the export's lines as raw usage events for billing
// providers that price usage themselves (Stripe, Lago, OpenMeter), instead
// of priced invoice lines. One event per line of the export (tenant ×
// meter × meter currency × usage month), its value the line's Quantity
// (raw usage: for a gauge, the period's highest hourly level). Every event
// has a deterministic id (FeedEventID), so sending an export twice, or
// downloading it again, gives the provider the same ids to de-duplicate on.
const (
	// FormatCloudEvents is JSON Lines of CloudEvents 1.0 (structured mode),
	// type UsageEventType.
	FormatCloudEvents Format = "cloudevents"
	// FormatStripeMeterEvents is JSON Lines of Stripe meter events (the
	// body of POST /v1/billing/meter_events), addressed to each tenant's
	// billing_customer_id.
	FormatStripeMeterEvents Format = "stripe-meter-events"
)

// CloudEvents attributes of the cloudevents feed.
const (
	UsageEventType   = "dev.tenantd.usage"
	UsageEventSource = "/tenantd/billing"
)

// feedNamespace is the UUID namespace of feed event ids (UUIDv5).
var feedNamespace = uuid.MustParse("6f1b1c52-4c1e-5b8a-9a57-5d0c8f3e2a10")

// FeedEventID is the id of a line's usage event: a UUIDv5 of the tenant,
// meter, meter currency, usage month, exported period and status, the same
// however often the line is exported. A provisional preview's ids differ
// from the final export's, so a provider that saw a preview still takes the
// final values.
func FeedEventID(l *Line) string {
	key := strings.Join([]string{l.TenantID, l.Meter, l.MeterCurrency, l.UsagePeriod, l.Period, l.Status}, "|")
	return uuid.NewSHA1(feedNamespace, []byte(key)).String()
}

// ErrMissingCustomers refuses a stripe-meter-events export while tenants
// with usage in the period have no billing_customer_id: the feed is either
// complete or not produced. Its field lists them.
func errMissingCustomers(missing []string) error {
	const show = 50
	list := strings.Join(missing[:min(len(missing), show)], ", ")
	if len(missing) > show {
		list += fmt.Sprintf(" and %d more", len(missing)-show)
	}
	return fault.Invalid(fault.Field("billing_customer_id", fmt.Sprintf(
		"%d tenant(s) with usage in the period have none, so their usage cannot be sent to Stripe: %s; "+
			"set it with PATCH /admin/v1/tenants/{id} and export again (the csv and jsonl exports list them meanwhile)",
		len(missing), list)))
}

// usageData is the data of a usage CloudEvent.
type usageData struct {
	TenantID   string `json:"tenant_id"`
	TenantSlug string `json:"tenant_slug"`
	Meter      string `json:"meter"`
	// Currency is the currency a money meter counts in (its value is in
	// minor units of it); omitted for meters that count things.
	Currency string `json:"currency,omitempty"`
	// Period is the exported billing period; UsagePeriod the month the
	// usage happened in (earlier for an adjustment line).
	Period      string `json:"period"`
	UsagePeriod string `json:"usage_period"`
	Line        string `json:"line"`
	Status      string `json:"status"`
	Value       int64  `json:"value"`
	Unit        string `json:"unit"`
	// Aggregation says how values of one meter combine over a period:
	// sum, or max for a gauge.
	Aggregation string `json:"aggregation"`
}

// cloudEvent is a CloudEvents 1.0 event in structured JSON mode.
type cloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            string    `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            usageData `json:"data"`
}

// stripeMeterEvent is a Stripe meter event (API version 2024-06-20 and
// later): value is a string of a whole number, timestamp Unix seconds.
type stripeMeterEvent struct {
	EventName  string        `json:"event_name"`
	Payload    stripePayload `json:"payload"`
	Identifier string        `json:"identifier"`
	Timestamp  int64         `json:"timestamp"`
}

type stripePayload struct {
	StripeCustomerID string `json:"stripe_customer_id"`
	Value            string `json:"value"`
}

// meterUnit is the unit a meter's quantity counts.
func meterUnit(meter, currency string) string {
	switch {
	case currency != "":
		return "minor_units"
	case meter == MeterAPIRequests:
		return "requests"
	case meter == MeterOrdersCreated:
		return "orders"
	case meter == MeterActiveProducts:
		return "products"
	}
	return "units"
}

// StripeEventName is the event_name a line goes to Stripe under: the meter,
// with the currency appended for a money meter (payment_volume_eur), since
// Stripe sums a meter's events whatever they carry.
func StripeEventName(meter, currency string) string {
	if currency == "" {
		return meter
	}
	return meter + "_" + strings.ToLower(currency)
}

// feedEncoder writes export lines as usage events.
type feedEncoder struct {
	enc       *json.Encoder
	format    Format
	time      string // RFC 3339: the period's end (CloudEvents time)
	timestamp int64  // the period's last second (Stripe timestamp)
	customers map[uuid.UUID]string
	skipped   int64 // lines not written: their tenant has no customer id and no usage
}

func (feedEncoder) begin() error { return nil }
func (feedEncoder) end() error   { return nil }

func (e *feedEncoder) encode(l *Line) error {
	var v any
	if e.format == FormatStripeMeterEvents {
		id, err := uuid.Parse(l.TenantID)
		if err != nil {
			return fmt.Errorf("stripe meter event: tenant id %q: %w", l.TenantID, err)
		}
		customer, ok := e.customers[id]
		if !ok {
			e.skipped++ // no usage (checked before writing): nothing to bill
			return nil
		}
		v = stripeMeterEvent{
			EventName:  StripeEventName(l.Meter, l.MeterCurrency),
			Payload:    stripePayload{StripeCustomerID: customer, Value: strconv.FormatInt(l.Quantity, 10)},
			Identifier: FeedEventID(l),
			Timestamp:  e.timestamp,
		}
	} else {
		aggregation := "sum"
		if IsGauge(l.Meter) {
			aggregation = "max"
		}
		v = cloudEvent{
			SpecVersion: "1.0", ID: FeedEventID(l), Source: UsageEventSource, Type: UsageEventType,
			Subject: l.TenantID, Time: e.time, DataContentType: "application/json",
			Data: usageData{
				TenantID: l.TenantID, TenantSlug: l.TenantSlug, Meter: l.Meter, Currency: l.MeterCurrency,
				Period: l.Period, UsagePeriod: l.UsagePeriod, Line: l.Kind, Status: l.Status,
				Value: l.Quantity, Unit: meterUnit(l.Meter, l.MeterCurrency), Aggregation: aggregation,
			},
		}
	}
	if err := e.enc.Encode(v); err != nil {
		return fmt.Errorf("write %s line: %w", e.format, err)
	}
	return nil
}

// encoder returns the line encoder of format for period's export. For
// stripe-meter-events it first reads the tenants' customer ids and refuses
// (errMissingCustomers) when a tenant with usage in the period has none;
// tenants with neither usage nor a customer id are left out of that feed.
func (e *Exporter) encoder(ctx context.Context, format Format, period string, final bool, w io.Writer) (lineEncoder, error) {
	if format != FormatCloudEvents && format != FormatStripeMeterEvents {
		return newLineEncoder(format, w), nil
	}
	_, end, err := monthBounds(period)
	if err != nil {
		return nil, err
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	fe := &feedEncoder{enc: enc, format: format, time: end.UTC().Format(time.RFC3339),
		timestamp: end.Add(-time.Second).Unix()}
	if format == FormatStripeMeterEvents {
		if fe.customers, err = e.customers(ctx, period, final); err != nil {
			return nil, err
		}
	}
	return fe, nil
}

// customers returns the billing customer id of every tenant that has one,
// after checking that every tenant with usage in the export has one.
func (e *Exporter) customers(ctx context.Context, period string, final bool) (map[uuid.UUID]string, error) {
	var rows []struct {
		ID                uuid.UUID
		BillingCustomerID string
	}
	err := e.db.WithPlatform(ctx, func(tx *gorm.DB) error {
		return tx.Raw("SELECT id, billing_customer_id FROM tenants WHERE billing_customer_id IS NOT NULL").Scan(&rows).Error
	})
	if err != nil {
		return nil, fmt.Errorf("read billing customers: %w", err)
	}
	out := make(map[uuid.UUID]string, len(rows))
	for _, r := range rows {
		out[r.ID] = r.BillingCustomerID
	}
	var used []struct {
		TenantID   uuid.UUID
		TenantSlug string
	}
	if err := e.db.Worker().Unscoped(ctx).Raw(`
		SELECT tenant_id, min(tenant_slug) AS tenant_slug FROM billing_export_rows(?, ?)
		GROUP BY tenant_id HAVING bool_or(quantity <> 0) ORDER BY min(tenant_slug) COLLATE "C"`, period, final).Scan(&used).Error; err != nil {
		return nil, fmt.Errorf("read tenants with usage in %s: %w", period, err)
	}
	var missing []string
	for _, u := range used {
		if _, ok := out[u.TenantID]; !ok {
			missing = append(missing, u.TenantSlug+" ("+u.TenantID.String()+")")
		}
	}
	if len(missing) > 0 {
		return nil, errMissingCustomers(missing)
	}
	return out, nil
}
