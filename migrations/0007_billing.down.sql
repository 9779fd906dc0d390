DROP TABLE IF EXISTS billing_periods;
DROP TABLE IF EXISTS usage_flushes;
DROP TABLE IF EXISTS usage_counters;
DROP TABLE IF EXISTS plan_meters;
