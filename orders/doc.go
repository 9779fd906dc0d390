// Package orders owns the order aggregate. An order is event-sourced: its
// stream ("order-<id>": order.placed, stock.reserved, order.completed,
// order.cancelled) is the truth, and order_views is the read model,
// projected in the same transaction as every append and rebuilt from the
// events by Rebuild. Placing an order reserves stock (through the Stock
// interface, satisfied by inventory) in the same transaction.
//
// The saga lives here too: on payment.succeeded it completes the order and
// commits the stock; on payment.failed with reason "declined" it cancels the
// order and releases the stock; a sweeper cancels pending orders whose
// reservations expired. Payments reads orders through PaymentTarget.
package orders
