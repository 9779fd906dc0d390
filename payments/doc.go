// Package payments owns a tenant's payments and refunds. It publishes a
// Service that pays a pending order through a payment Gateway, reads
// payments, refunds captured money through the gateway, refunds payments
// that succeeded for orders cancelled meanwhile (RefundCancelledOrder, for
// the order saga) and reconciles what was left in progress (Reconcile,
// RunReconciler); a Handler that serves them under /v1/payments; and the
// payment.succeeded, payment.failed, payment.refunded and
// payment.refund_failed events the order saga and others consume (see
// events.go).
//
// An order is charged at most once: the payment is recorded as processing
// before the gateway is called, and a partial unique index admits one
// processing, succeeded or declined payment per order, so concurrent
// attempts fail before they reach the gateway. The gateway is called
// outside any transaction, through retries with exponential backoff and
// jitter and a circuit breaker (Resilient), with the payment id (a
// refund's id for a refund) as the idempotency key. The built-in Simulated
// gateway answers by payment method and keeps its books in tables of its
// own, as a real provider would.
//
// Money is never left half-done: the outcome of a gateway call is written
// with retries for minutes, and whatever stays processing or pending after
// that (a crash, a long outage) is settled by the reconciler from the
// gateway's record, once, on any number of replicas.
//
// It needs a *db.DB (every tenant query runs in db.WithTenant, so
// row-level security keeps each tenant to its own rows; the reconciler
// finds work across tenants only through SECURITY DEFINER functions that
// return (tenant, id) pairs), an Orders implementation (the orders
// module's service) for the order's state and total, and a Gateway. It
// records refunds it makes on its own in the audit trail (internal/audit).
package payments
