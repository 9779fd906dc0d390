DROP FUNCTION IF EXISTS billing_active_products();
DROP POLICY IF EXISTS owner_metering ON products;
