-- Payments and refunds. An order's total is charged at most once: a payment
-- is inserted as 'processing' before the gateway is called, and the partial
-- unique index below admits one processing, succeeded or declined payment
-- per order (a declined one makes the saga cancel the order). Payments that
-- failed because the gateway was unavailable or erred leave room for
-- another attempt. order_id refers to an order of the orders module by id
-- only: modules do not share tables.

CREATE TABLE payments (
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                uuid NOT NULL,
    order_id          uuid NOT NULL,
    status            text NOT NULL CHECK (status IN ('processing', 'succeeded', 'failed')),
    amount            bigint NOT NULL CHECK (amount > 0),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    payment_method    text NOT NULL CHECK (length(payment_method) BETWEEN 1 AND 64),
    failure_reason    text CHECK (failure_reason IN ('declined', 'gateway_unavailable', 'gateway_error')),
    decline_reason    text CHECK (length(decline_reason) <= 200),
    gateway_reference text CHECK (length(gateway_reference) <= 200),
    captured          bigint NOT NULL DEFAULT 0,
    refunded          bigint NOT NULL DEFAULT 0,
    version           int NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT payments_failure_reason_status_check CHECK ((status = 'failed') = (failure_reason IS NOT NULL)),
    CONSTRAINT payments_captured_check CHECK (
        (status = 'succeeded' AND captured = amount) OR (status <> 'succeeded' AND captured = 0)),
    CONSTRAINT payments_refunded_check CHECK (refunded >= 0 AND refunded <= captured)
);
CREATE UNIQUE INDEX payments_order_live_key ON payments (tenant_id, order_id)
    WHERE status IN ('processing', 'succeeded') OR failure_reason = 'declined';
CREATE INDEX payments_order ON payments (tenant_id, order_id, id);
ALTER TABLE payments ENABLE ROW LEVEL SECURITY;
ALTER TABLE payments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON payments
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
GRANT SELECT, INSERT, UPDATE, DELETE ON payments TO tenantd_app;

-- Refunds of succeeded payments; their sum is kept in payments.refunded,
-- whose CHECK keeps it within what was captured.
CREATE TABLE refunds (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id         uuid NOT NULL,
    payment_id uuid NOT NULL,
    amount     bigint NOT NULL CHECK (amount > 0),
    currency   text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, payment_id) REFERENCES payments (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refunds_payment ON refunds (tenant_id, payment_id);
ALTER TABLE refunds ENABLE ROW LEVEL SECURITY;
ALTER TABLE refunds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refunds
    USING (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
GRANT SELECT, INSERT, UPDATE, DELETE ON refunds TO tenantd_app;
