DROP FUNCTION IF EXISTS webhook_deliveries_due(timestamptz, int, int);
DROP TABLE IF EXISTS webhook_attempts;
DROP TABLE IF EXISTS webhook_deliveries;
DROP TABLE IF EXISTS webhook_endpoints;
