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

// The events the business meters count: copies of orders.EventPlaced and
// payments.EventSucceeded, whose producers own the names (billing imports
// no other module). internal/app's TestSubscribersUseProducersEventTypes
// pins them to the producers' constants.
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
	SubscribeBatch(subscriber string, types []string, h events.BatchHandler)
}

// SubscribeMeters registers the business meters with the dispatcher: +1
// orders_created per order.placed, +amount payment_volume (in the payment's
// currency) per payment.succeeded. Counts go into usage_counters in the
// handler's transaction, with the dispatcher's checkpoint, so each event is
// counted exactly once, in the hour it was appended. The meters take a
// delivered batch at a time and add one sum per (meter, currency, hour),
// so a burst of orders costs one upsert, not one transaction per event.
func SubscribeMeters(d Subscriber) {
	d.SubscribeBatch(MetersSubscriber, []string{eventOrderPlaced, eventPaymentSucceeded}, countEvents)
}

// countEvents is the business meters' handler: evs are one tenant's, and
// addCounts merges them into one upsert per row.
func countEvents(ctx context.Context, tx *gorm.DB, evs []events.Event) error {
	cs := make([]count, 0, len(evs))
	for _, e := range evs {
		c, ok, err := countOf(e)
		if err != nil {
			return err
		}
		if ok {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil
	}
	return addCounts(tx.WithContext(ctx), evs[0].TenantID, cs)
}

// countOf is what one event adds to the meters (ok false: nothing).
func countOf(e events.Event) (c count, ok bool, err error) {
	hour := e.CreatedAt.UTC().Truncate(time.Hour)
	switch e.Type {
	case eventOrderPlaced:
		return count{meter: MeterOrdersCreated, hour: hour, n: 1}, true, nil
	case eventPaymentSucceeded:
		var p paymentOutcome
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return count{}, false, fmt.Errorf("read %s %s: %w", e.Type, e.ID, err)
		}
		if p.Amount < 0 || !currencyCode.MatchString(p.Currency) {
			return count{}, false, fmt.Errorf("%s %s: amount %d %q is not meterable", e.Type, e.ID, p.Amount, p.Currency)
		}
		if p.Amount == 0 {
			return count{}, false, nil
		}
		return count{meter: MeterPaymentVolume, currency: p.Currency, hour: hour, n: p.Amount}, true, nil
	}
	return count{}, false, nil
}
