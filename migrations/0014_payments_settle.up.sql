-- Payments that always settle (docs/operations.md, "Payments: reconciliation
-- and refunds").
--
-- Refunds now go to the payment gateway: a refund is pending until the
-- gateway answers, then succeeded or failed. Its id is its idempotency key
-- towards the gateway. payments.refunded counts pending and succeeded
-- refunds, so that concurrent refunds can never promise more than was
-- captured; a failed refund gives its amount back. Refunds written before
-- this migration were settled without a gateway and count as succeeded.
ALTER TABLE refunds
    ADD COLUMN status text NOT NULL DEFAULT 'succeeded'
        CHECK (status IN ('pending', 'succeeded', 'failed')),
    -- requested: through the API; order_cancelled: by the saga, for a
    -- payment that succeeded for an order already cancelled or expired.
    ADD COLUMN reason text NOT NULL DEFAULT 'requested'
        CHECK (reason IN ('requested', 'order_cancelled')),
    ADD COLUMN failure_reason text CHECK (length(failure_reason) BETWEEN 1 AND 200),
    ADD COLUMN gateway_reference text CHECK (length(gateway_reference) <= 200),
    -- When the reconciler may (next) send a pending refund to the gateway:
    -- a refund that a request is sending right now is left to it until then.
    ADD COLUMN attempt_after timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT refunds_failure_reason_status_check CHECK ((status = 'failed') = (failure_reason IS NOT NULL));
ALTER TABLE refunds ALTER COLUMN status SET DEFAULT 'pending';
-- A payment is refunded for its cancelled order at most once, however often
-- the saga sees its success.
CREATE UNIQUE INDEX refunds_order_cancelled_key ON refunds (tenant_id, payment_id) WHERE reason = 'order_cancelled';
-- The reconciler's scans across tenants (as order_views_pending_expiry).
CREATE INDEX refunds_pending_attempt ON refunds (attempt_after) WHERE status = 'pending';
CREATE INDEX payments_processing_created ON payments (created_at) WHERE status = 'processing';

-- The reconciler's cross-tenant reads: (tenant, id) pairs and nothing else.
-- It then works on each under db.WithTenant, with row-level security. The
-- functions run as the owner, whom FORCE ROW LEVEL SECURITY binds too: these
-- policies let the owner read exactly the rows they look for.
CREATE POLICY owner_reconcile ON payments FOR SELECT TO CURRENT_USER USING (status = 'processing');
CREATE POLICY owner_reconcile ON refunds FOR SELECT TO CURRENT_USER USING (status = 'pending');

-- Payments still processing that were created before p_before: their
-- outcome was never written (a crash, or the database was down when the
-- gateway answered).
CREATE FUNCTION payments_unsettled(p_before timestamptz, p_limit int)
RETURNS TABLE (tenant_id uuid, payment_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT p.tenant_id, p.id FROM payments p
    WHERE p.status = 'processing' AND p.created_at < p_before
    ORDER BY p.created_at
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION payments_unsettled(timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION payments_unsettled(timestamptz, int) TO tenantd_app;

-- Pending refunds due to be sent (again) to the gateway at p_now.
CREATE FUNCTION refunds_due(p_now timestamptz, p_limit int)
RETURNS TABLE (tenant_id uuid, refund_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT r.tenant_id, r.id FROM refunds r
    WHERE r.status = 'pending' AND r.attempt_after <= p_now
    ORDER BY r.attempt_after
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION refunds_due(timestamptz, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refunds_due(timestamptz, int) TO tenantd_app;

-- The simulated payment provider's own books (payments.Simulated). They
-- stand in for the provider's systems, not for tenantd's data: platform
-- tables without tenant_id, keyed by tenantd's idempotency keys (a payment's
-- id for a charge, a refund's id for a refund), which outlive any tenantd
-- process as a real provider's records would. tenantd's domain code never
-- reads them; only the simulated gateway does.
CREATE TABLE sim_gateway_charges (
    idempotency_key uuid PRIMARY KEY,
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    method          text NOT NULL CHECK (length(method) BETWEEN 1 AND 64),
    status          text NOT NULL CHECK (status IN ('approved', 'declined')),
    reference       text NOT NULL CHECK (length(reference) BETWEEN 1 AND 200),
    decline_reason  text CHECK (length(decline_reason) <= 200),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sim_gateway_refunds (
    idempotency_key uuid PRIMARY KEY,
    charge_key      uuid NOT NULL REFERENCES sim_gateway_charges (idempotency_key),
    amount          bigint NOT NULL CHECK (amount > 0),
    status          text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    reference       text CHECK (length(reference) <= 200),
    failure_reason  text CHECK (length(failure_reason) <= 200),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sim_gateway_refunds_charge ON sim_gateway_refunds (charge_key);
-- UPDATE only for SELECT … FOR UPDATE, which serializes a charge's refunds.
GRANT SELECT, INSERT, UPDATE ON sim_gateway_charges, sim_gateway_refunds TO tenantd_app;
