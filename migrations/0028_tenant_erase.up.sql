-- Tenant erasure in one function, as one role (issue 14, gdpr on Citus).
--
-- gdpr.Eraser.Erase's transaction mixed the worker role's statements
-- (locking and deleting the tenants row, deleting the tenant's casbin_rule
-- rows, writing the tombstone) with the owner's tenant_erase_rows (0022).
-- On plain PostgreSQL that is one backend. Citus sends each role's
-- statements over connections of their own: the two roles then waited on
-- each other's locks on the workers (40P01 in lock_shard_resources, and
-- the tenants DELETE waiting on the owner's uncommitted child deletes
-- through ON DELETE CASCADE), or Citus refused the worker role's write
-- outright (25001 "cannot perform query on placements that were modified
-- in this transaction by a different user").
--
-- tenant_erase does every read and write of the erasure as the owner, in
-- the calling transaction's tenant scope, for the tenant bound by
-- db.WithTenant (app.tenant_id) only:
--   1. locks the tenants row; refuses an unknown tenant (P0002), one that
--      is not suspended (55000) and a p_slug that is not its slug (22023),
--      which gdpr maps to ErrNotFound, ErrNotSuspended and ErrConfirm;
--   2. reads the head of its audit chain (the last sealed link);
--   3. deletes its rows of each table of p_tables, in that order (gdpr
--      passes every tenant table of the catalog, children first); each
--      must be a table of schema public with a tenant_id column (42501
--      otherwise, as tenant_erase_rows);
--   4. deletes its casbin_rule rows (those of its domain: casbin_rule is
--      not FORCEd, so the owner filters by v1 itself) and its tenants row;
--   5. builds the erasure receipt, encoded exactly as encoding/json
--      encodes gdpr.Receipt (fields in order, map keys sorted, erased_at
--      as RFC 3339 with trailing zeros of the fraction dropped; gdpr
--      checks the encoding against its own), writes the tombstone with the
--      receipt's SHA-256, and returns the receipt.
-- Without a tenant bound (the platform scope, no scope) it refuses
-- (42501). The tables' policies bind the owner too (FORCE ROW LEVEL
-- SECURITY): tenants, the tenant tables and tenant_tombstones admit the
-- bound tenant's rows only. Executable by tenantd_worker only, as
-- tenant_erase_rows.
--
-- tenants_refuse_tombstoned (0022) names tenant_tombstones_pkey in its
-- message too: on Citus the trigger runs on the nodes holding the tenants
-- placements, and the coordinator relays their error without the
-- constraint field (db.IsUniqueViolation then reads the name from the
-- message). Same SQLSTATE and constraint field as before.
--
-- One DO block, each statement its own EXECUTE: after 0026, Citus needs
-- one statement per message (citusdata/citus#6608).
DO $do$
BEGIN
    EXECUTE $f$
CREATE FUNCTION tenant_erase(p_slug text, p_tables regclass[], p_redis_keys bigint, p_erased_at timestamptz)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $body$
DECLARE
    v_tenant uuid := nullif(current_setting('app.tenant_id', true), '')::uuid;
    v_slug text;
    v_status text;
    v_seq bigint;
    v_hash text;
    v_table regclass;
    v_name text;
    v_rows bigint;
    v_names text[] := '{}';
    v_counts bigint[] := '{}';
    v_at timestamp;
    v_fraction text;
    v_receipt text;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'tenant_erase runs only in a tenant''s transaction'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_tables IS NULL OR p_redis_keys IS NULL OR p_redis_keys < 0 OR p_erased_at IS NULL THEN
        RAISE EXCEPTION 'tenant_erase: tables, a Redis key count >= 0 and the erasure time are required'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(p_tables) <> (SELECT count(DISTINCT x) FROM unnest(p_tables) x) THEN
        RAISE EXCEPTION 'tenant_erase: a table is listed twice' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT t.slug, t.status INTO v_slug, v_status FROM tenants t WHERE t.id = v_tenant FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant % does not exist', v_tenant USING ERRCODE = 'no_data_found';
    END IF;
    IF v_status <> 'suspended' THEN
        RAISE EXCEPTION 'tenant % is not suspended: only a suspended tenant is erased', v_tenant
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF p_slug IS DISTINCT FROM v_slug THEN
        RAISE EXCEPTION 'tenant %: the confirmation is not its slug', v_tenant
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The head of the audit chain before erasure: rows not sealed yet were
    -- never part of it.
    SELECT a.seq, encode(a.hash, 'hex') INTO v_seq, v_hash
    FROM audit_events a
    WHERE a.tenant_id = v_tenant AND a.hash IS NOT NULL
    ORDER BY a.seq DESC
    LIMIT 1;
    IF NOT FOUND THEN
        v_seq := 0;
        v_hash := repeat('0', 64); -- the genesis hash
    END IF;

    FOREACH v_table IN ARRAY p_tables LOOP
        SELECT c.relname INTO v_name
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.oid = v_table AND n.nspname = 'public' AND c.relkind IN ('r', 'p')
          AND a.attname = 'tenant_id' AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a tenant table', v_table USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF v_name !~ '^[a-z0-9_]+$' THEN
            RAISE EXCEPTION 'tenant_erase: table name % needs escaping in the receipt', v_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        EXECUTE format('DELETE FROM public.%I WHERE tenant_id = $1', v_name) USING v_tenant;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_names := v_names || v_name;
        v_counts := v_counts || v_rows;
    END LOOP;

    DELETE FROM casbin_rule WHERE v1 = v_tenant::text;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    v_names := v_names || 'casbin_rule'::text;
    v_counts := v_counts || v_rows;

    DELETE FROM tenants WHERE id = v_tenant;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows <> 1 THEN
        RAISE EXCEPTION 'tenant_erase: deleted % tenants rows of %, want 1', v_rows, v_tenant;
    END IF;
    v_names := v_names || 'tenants'::text;
    v_counts := v_counts || v_rows;

    v_at := p_erased_at AT TIME ZONE 'UTC';
    v_fraction := rtrim(to_char(v_at, 'US'), '0');
    v_receipt := '{"tenant_id":"' || v_tenant::text || '","tables":{'
        || (SELECT string_agg('"' || n || '":' || c::text, ',' ORDER BY n COLLATE "C")
            FROM unnest(v_names, v_counts) AS u(n, c))
        || '},"redis_keys":' || p_redis_keys::text
        || ',"audit_head":{"seq":' || v_seq::text || ',"hash":"' || v_hash || '"}'
        || ',"erased_at":"' || to_char(v_at, 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN v_fraction = '' THEN '' ELSE '.' || v_fraction END || 'Z"}';

    INSERT INTO tenant_tombstones (id, slug, erased_at, receipt_sha256)
    VALUES (v_tenant, v_slug, p_erased_at, encode(sha256(convert_to(v_receipt, 'UTF8')), 'hex'));
    RETURN v_receipt;
END
$body$
$f$;
    EXECUTE $f$
CREATE OR REPLACE FUNCTION tenants_refuse_tombstoned() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $body$
BEGIN
    IF EXISTS (SELECT 1 FROM tenant_tombstones t WHERE t.id = NEW.id) THEN
        RAISE EXCEPTION 'tenant id % was erased and cannot be used again (violates unique constraint "tenant_tombstones_pkey")', NEW.id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'tenant_tombstones_pkey';
    END IF;
    RETURN NEW;
END
$body$
$f$;
    EXECUTE 'REVOKE ALL ON FUNCTION tenant_erase(text, regclass[], bigint, timestamptz) FROM PUBLIC';
    EXECUTE 'GRANT EXECUTE ON FUNCTION tenant_erase(text, regclass[], bigint, timestamptz) TO tenantd_worker';
END
$do$;
