-- Back to 0020: the records of feed exports go (their files can no longer
-- be downloaded once the formats are gone), and so do customer ids.
DELETE FROM billing_exports WHERE format NOT IN ('csv', 'jsonl');
ALTER TABLE billing_exports DROP CONSTRAINT billing_exports_format_check;
ALTER TABLE billing_exports ADD CONSTRAINT billing_exports_format_check CHECK (format IN ('csv', 'jsonl'));
ALTER TABLE tenants DROP COLUMN billing_customer_id;
