package orders

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tenantd/tenantd/internal/events"
	"github.com/tenantd/tenantd/internal/fault"
)

// Status is where an order stands.
type Status string

// Order statuses.
const (
	Pending   Status = "pending"
	Completed Status = "completed"
	Cancelled Status = "cancelled"
)

// Cancellation reasons.
const (
	ReasonCustomerRequest    = "customer_request"
	ReasonPaymentDeclined    = "payment_declined"
	ReasonReservationExpired = "reservation_expired"
)

// Event types of the order stream.
const (
	EventPlaced        = "order.placed"
	EventStockReserved = "stock.reserved"
	EventCompleted     = "order.completed"
	EventCancelled     = "order.cancelled"
)

// Item is one line of an order, priced when it was placed.
type Item struct {
	ProductID uuid.UUID `json:"product_id"`
	SKU       string    `json:"sku"`
	Quantity  int64     `json:"quantity"`
	UnitPrice int64     `json:"unit_price"`
	Amount    int64     `json:"amount"`
}

// Order is the state folded from an order's events.
type Order struct {
	ID                   uuid.UUID
	TenantID             uuid.UUID
	CustomerID           string
	Status               Status
	Items                []Item
	Total                int64
	Currency             string
	CancellationReason   string
	PaymentID            *uuid.UUID
	ReservationExpiresAt time.Time
	Version              int64
	CreatedAt            time.Time
	UpdatedAt            time.Time
}

// Placed is the payload of order.placed.
type Placed struct {
	OrderID              uuid.UUID `json:"order_id"`
	CustomerID           string    `json:"customer_id"`
	Items                []Item    `json:"items"`
	Total                int64     `json:"total"`
	Currency             string    `json:"currency"`
	ReservationExpiresAt time.Time `json:"reservation_expires_at"`
}

// StockReserved is the payload of stock.reserved.
type StockReserved struct {
	OrderID      uuid.UUID          `json:"order_id"`
	Reservations []ReservedQuantity `json:"reservations"`
}

// ReservedQuantity is one reservation made for an order.
type ReservedQuantity struct {
	ReservationID uuid.UUID `json:"reservation_id"`
	ProductID     uuid.UUID `json:"product_id"`
	Quantity      int64     `json:"quantity"`
}

// CompletedEvent is the payload of order.completed.
type CompletedEvent struct {
	OrderID   uuid.UUID `json:"order_id"`
	PaymentID uuid.UUID `json:"payment_id"`
}

// CancelledEvent is the payload of order.cancelled.
type CancelledEvent struct {
	OrderID uuid.UUID `json:"order_id"`
	Reason  string    `json:"reason"`
}

// Apply folds one event into the order.
func (o *Order) Apply(e events.Event) error {
	switch e.Type {
	case EventPlaced:
		var p Placed
		if err := json.Unmarshal(e.Data, &p); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		*o = Order{ID: p.OrderID, TenantID: e.TenantID, CustomerID: p.CustomerID, Status: Pending, Items: p.Items,
			Total: p.Total, Currency: p.Currency, ReservationExpiresAt: p.ReservationExpiresAt, CreatedAt: e.CreatedAt}
	case EventStockReserved:
	case EventCompleted:
		var c CompletedEvent
		if err := json.Unmarshal(e.Data, &c); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		o.Status, o.PaymentID = Completed, &c.PaymentID
	case EventCancelled:
		var c CancelledEvent
		if err := json.Unmarshal(e.Data, &c); err != nil {
			return fmt.Errorf("decode %s: %w", e.Type, err)
		}
		o.Status, o.CancellationReason = Cancelled, c.Reason
	default:
		return fmt.Errorf("unknown order event %q", e.Type)
	}
	o.Version, o.UpdatedAt = e.Version, e.CreatedAt
	return nil
}

// Fold builds an order from its stream; ErrNotFound for an empty stream.
func Fold(stream []events.Event) (Order, error) {
	if len(stream) == 0 {
		return Order{}, ErrNotFound
	}
	var o Order
	for _, e := range stream {
		if err := o.Apply(e); err != nil {
			return Order{}, err
		}
	}
	return o, nil
}

// StreamID is the event stream of an order.
func StreamID(id uuid.UUID) string { return "order-" + id.String() }

// NewOrder is a request to place an order.
type NewOrder struct {
	CustomerID string
	Items      []NewItem
}

// NewItem is one requested line.
type NewItem struct {
	ProductID uuid.UUID
	Quantity  int64
}

// Limits of an order.
const (
	MaxItems    = 100
	MaxQuantity = 1_000_000
)

// Sentinel errors.
var (
	ErrNotFound        = fault.New(fault.NotFound, "order not found")
	ErrNotPending      = fault.New(fault.Conflict, "only a pending order can be cancelled")
	ErrMixedCurrencies = fault.Invalid(fault.Field("items", "all products of an order must have the same currency"))
	ErrBusy            = fault.New(fault.Conflict, "the order changed concurrently; retry")
	errTotalOverflow   = fault.Invalid(fault.Field("items", "the order total is too large"))
)

// Validate checks the request and merges repeated products.
func (n *NewOrder) Validate() error {
	var f fault.Fields
	n.CustomerID = strings.TrimSpace(n.CustomerID)
	if l := utf8.RuneCountInString(n.CustomerID); l < 1 || l > 100 {
		f.Add("customer_id", "must be 1 to 100 characters")
	}
	if len(n.Items) == 0 || len(n.Items) > MaxItems {
		f.Add("items", fmt.Sprintf("must have 1 to %d items", MaxItems))
	}
	merged := make([]NewItem, 0, len(n.Items))
	index := map[uuid.UUID]int{}
	for i, it := range n.Items {
		if it.ProductID == uuid.Nil {
			f.Add(fmt.Sprintf("items[%d].product_id", i), "is required")
			continue
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			f.Add(fmt.Sprintf("items[%d].quantity", i), fmt.Sprintf("must be 1 to %d", MaxQuantity))
			continue
		}
		if j, ok := index[it.ProductID]; ok {
			if merged[j].Quantity += it.Quantity; merged[j].Quantity > MaxQuantity {
				f.Add(fmt.Sprintf("items[%d].quantity", i), fmt.Sprintf("a product's total quantity must be at most %d", MaxQuantity))
			}
			continue
		}
		index[it.ProductID] = len(merged)
		merged = append(merged, it)
	}
	n.Items = merged
	return f.Err()
}
