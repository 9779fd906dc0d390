-- Back to 0022's tenants_refuse_tombstoned message. One DO block, each
-- statement its own EXECUTE (citusdata/citus#6608).
DO $do$
BEGIN
    EXECUTE 'DROP FUNCTION IF EXISTS tenant_erase(text, regclass[], bigint, timestamptz)';
    EXECUTE $f$
CREATE OR REPLACE FUNCTION tenants_refuse_tombstoned() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $body$
BEGIN
    IF EXISTS (SELECT 1 FROM tenant_tombstones t WHERE t.id = NEW.id) THEN
        RAISE EXCEPTION 'tenant id % was erased and cannot be used again', NEW.id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'tenant_tombstones_pkey';
    END IF;
    RETURN NEW;
END
$body$
$f$;
END
$do$;
