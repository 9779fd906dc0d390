DROP FUNCTION IF EXISTS orders_expired(timestamptz, int);
DROP TABLE IF EXISTS order_views;
DROP TABLE IF EXISTS reservations;
