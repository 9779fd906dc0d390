// Package inventory owns a tenant's catalogue: products with their price and
// the stock on hand and reserved for each. It publishes a Service for the
// product use cases (create, read, list, change, delete, adjust stock) and a
// Handler that serves them under /v1/products. Stock is changed only by
// guarded SQL updates, so stock on hand never drops below what is reserved,
// however many requests race. It needs a *db.DB: every query runs in
// db.WithTenant, so row-level security keeps each tenant to its own rows.
package inventory
