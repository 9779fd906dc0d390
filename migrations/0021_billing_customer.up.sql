-- Billing feeds (issue 12, part 5). A tenant's customer at the billing
-- provider (a Stripe customer id, a Lago or OpenMeter external customer id),
-- set by an operator through PATCH /admin/v1/tenants/{id}; NULL until set.
-- The stripe-meter-events export addresses usage to it. The check matches
-- tenant.ValidBillingCustomerID.
ALTER TABLE tenants ADD COLUMN billing_customer_id text
    CHECK (billing_customer_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$');

-- The two feed formats of billing exports join csv and jsonl.
ALTER TABLE billing_exports DROP CONSTRAINT billing_exports_format_check;
ALTER TABLE billing_exports ADD CONSTRAINT billing_exports_format_check
    CHECK (format IN ('csv', 'jsonl', 'cloudevents', 'stripe-meter-events'));
