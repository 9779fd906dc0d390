// Package payments owns a tenant's payments and refunds. It publishes a
// Service that pays a pending order through a payment Gateway, reads
// payments, and refunds captured money; a Handler that serves them under
// /v1/payments; and the payment.succeeded, payment.failed and
// payment.refunded events the order saga consumes (see events.go).
//
// An order is charged at most once: the payment is recorded as processing
// before the gateway is called, and a partial unique index admits one
// processing, succeeded or declined payment per order, so concurrent
// attempts fail before they reach the gateway. The gateway is called
// outside any transaction, through retries with exponential backoff and
// jitter and a circuit breaker (Resilient), with the payment id as the
// idempotency key. The built-in Simulated gateway answers by payment method.
//
// It needs a *db.DB (every query runs in db.WithTenant, so row-level
// security keeps each tenant to its own rows), an Orders implementation
// (the orders module's service) for the order's state and total, and a
// Gateway.
package payments
