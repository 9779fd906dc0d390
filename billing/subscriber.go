package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"gorm.io/gorm"

	"github.com/tenantd/tenantd/internal/events"
)

// MetersSubscriber is the business meters' checkpoint name in the event
// dispatcher: keep it stable, a new name would count the whole log again.
const MetersSubscriber = "billing-meters"

// The events the business meters count, as orders and payments append
// them.
const (
	eventOrderPlaced      = "order.placed"
	eventPaymentSucceeded = "payment.succeeded"
)

// paymentOutcome is the part of payment.succeeded's data that is metered.
type paymentOutcome struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// Subscriber is where SubscribeMeters registers: the event dispatcher.
type Subscriber interface {
	Subscribe(subscriber string, types []string, h events.Handler)
}

// SubscribeMeters registers the business meters with the dispatcher: +1
// orders_created per order.placed, +amount payment_volume (in the payment's
// currency) per payment.succeeded. Counts go into usage_counters in the
// handler's transaction, with the dispatcher's checkpoint, so each event is
// counted exactly once, in the hour it was appended.
func SubscribeMeters(d Subscriber) {
	d.Subscribe(MetersSubscriber, []string{eventOrderPlaced, eventPaymentSucceeded}, countEvent)
}

// countEvent is the business meters' event handler.
func countEvent(ctx context.Context, tx *gorm.DB, e events.Event) error {
	hour := e.CreatedAt.UTC().Truncate(time.Hour)
	var c count
	switch e.Type {
	case eventOrderPlaced:
		c = count{meter: MeterOrdersCreated, hour: hour, n: 1}
	case eventPaymentSucceeded:
		var p paymentOutcome
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return fmt.Errorf("read %s %s: %w", e.Type, e.ID, err)
		}
		if p.Amount < 0 || !currencyCode.MatchString(p.Currency) {
			return fmt.Errorf("%s %s: amount %d %q is not meterable", e.Type, e.ID, p.Amount, p.Currency)
		}
		if p.Amount == 0 {
			return nil
		}
		c = count{meter: MeterPaymentVolume, currency: p.Currency, hour: hour, n: p.Amount}
	default:
		return nil
	}
	return addCounts(tx.WithContext(ctx), e.TenantID, []count{c})
}
