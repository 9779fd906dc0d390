DROP FUNCTION dead_letter_tenant(uuid);
DROP FUNCTION dead_letters_page(text, uuid, uuid, int);
DROP POLICY owner_operator ON dead_letters;
DROP TABLE platform_audit_events;
