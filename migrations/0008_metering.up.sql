-- Metering: the one cross-tenant read behind the active_products gauge.

-- The owner (and so billing_active_products below) counts every tenant's
-- products. tenantd_app is not the owner, so this admits it nothing.
CREATE POLICY owner_metering ON products FOR SELECT TO CURRENT_USER USING (true);

-- How many products each tenant has now, for tenants with any: the sample
-- that billing writes into usage_counters (meter active_products) through
-- its own tenant transactions. Returns counts only, never a product. Runs as
-- the owner.
CREATE FUNCTION billing_active_products()
RETURNS TABLE (tenant_id uuid, products bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT p.tenant_id, count(*)::bigint FROM products p GROUP BY p.tenant_id
$$;
REVOKE ALL ON FUNCTION billing_active_products() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION billing_active_products() TO tenantd_app;
