-- Citus only (issue 14): every tenant table distributed by tenant_id,
-- co-located with products; the platform tables reference tables (a copy on
-- every node). Nothing happens on plain PostgreSQL, or on a database without
-- the citus extension: this is how `tenantd migrate up` detects Citus
-- (devenv.Provision creates the extension; docs/citus/README.md).
--
-- One DO block, each DDL statement its own EXECUTE: Citus forwards DDL on
-- distributed tables with the text of the statement it came in, so a
-- multi-statement migration string fails on the workers ("cannot insert
-- multiple commands into a prepared statement", citusdata/citus#6608).
-- Migrations after this one must likewise send one statement per message
-- (or wrap their statements in a DO block).
--
-- * Tenant tables: the tables with a tenant_id column, except api_keys.
--   Their unique keys all lead with tenant_id (events' since 0025).
-- * Reference tables: every other table but schema_migrations (golang-
--   migrate's, read on the coordinator). api_keys is one: the credential
--   is looked up by its prefix before the tenant is known
--   (auth_api_key_lookup), so UNIQUE (prefix) must hold across tenants, and
--   a reference table keeps it and reads it on the coordinator without a
--   fan-out; it keeps its tenant policy on every node.
-- * Foreign keys: converting tenants to a reference table first would turn
--   every table referencing it into a Citus local table, which can then be
--   neither co-located nor referenced by a distributed table. So every
--   foreign key among the converted tables is dropped, the tables are
--   converted, and the keys are added back as they were (distributed to
--   reference, and co-located distributed to distributed, which Citus
--   allows), except those between two reference tables (tenants to plans,
--   plan_meters to plans, the simulated gateway's refunds to its charges):
--   before a write to a reference table Citus locks the reference tables
--   it references on the first worker, and concurrent updates of one
--   tenant's row then ended in distributed deadlocks (internal/app
--   TestHotTenantWrites: 31 of 312 requests failed with 40P01 after three
--   attempts; none without the key). tenants.plan keeps its check as a
--   trigger (tenants_plan_exists, the same SQLSTATE 23503, so an unknown
--   plan is still refused as one); plans are written by migrations only.
-- * Triggers: audit_events_before_update (row checks only) and
--   tenants_refuse_tombstoned (reads tenant_tombstones, a reference table,
--   with a copy on every node) run on the nodes holding the placements;
--   Citus requires citus.enable_unsafe_triggers for that.
-- * citus.propagate_set_commands = 'local' for the database (also set by
--   devenv.Provision): app_bind_tenant's and app_bind_platform's SET LOCAL
--   (0024) then reach every worker of the transaction, where the policies
--   are evaluated.
DO $$
DECLARE
    fks text[][] := '{}';
    fk text[];
    t text;
    tenant_tables text[];
    reference_tables text[];
    fn record;
    body text;
    def text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN;
    END IF;

    EXECUTE format('ALTER DATABASE %I SET citus.propagate_set_commands = %L', current_database(), 'local');
    PERFORM set_config('citus.propagate_set_commands', 'local', true);
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    -- Reference tables are written (the foreign keys' checks, the local
    -- copies truncated) after the shards were created in parallel: in one
    -- transaction Citus allows that only in sequential mode.
    PERFORM set_config('citus.multi_shard_modify_mode', 'sequential', true);

    SELECT array_agg(c.relname::text ORDER BY c.relname) FILTER (WHERE a.attname IS NOT NULL AND c.relname <> 'api_keys'),
           array_agg(c.relname::text ORDER BY c.relname) FILTER (WHERE a.attname IS NULL OR c.relname = 'api_keys')
      INTO tenant_tables, reference_tables
    FROM pg_class c
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname <> 'schema_migrations';
    IF NOT 'products' = ANY (tenant_tables) THEN
        RAISE EXCEPTION '0026: no products table to co-locate the tenant tables with';
    END IF;

    -- Foreign keys among the tables to convert, dropped and kept.
    FOR fk IN
        SELECT ARRAY[c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid), c.confrelid::regclass::text]
        FROM pg_constraint c
        WHERE c.contype = 'f'
          AND c.conrelid::regclass::text = ANY (tenant_tables || reference_tables)
        ORDER BY 1
    LOOP
        fks := fks || ARRAY[fk];
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', fk[1], fk[2]);
    END LOOP;

    FOREACH t IN ARRAY reference_tables LOOP
        PERFORM create_reference_table(t::regclass);
    END LOOP;
    PERFORM create_distributed_table('products', 'tenant_id');
    FOREACH t IN ARRAY tenant_tables LOOP
        IF t <> 'products' THEN
            PERFORM create_distributed_table(t::regclass, 'tenant_id', colocate_with => 'products');
        END IF;
    END LOOP;
    -- The rows were copied to the shards; the coordinator's own copy (what
    -- was there before, such as the plans) is no longer read.
    FOREACH t IN ARRAY tenant_tables || reference_tables LOOP
        PERFORM truncate_local_data_after_distributing_table(t::regclass);
    END LOOP;

    IF array_length(fks, 1) IS NOT NULL THEN
        FOREACH fk SLICE 1 IN ARRAY fks LOOP
            IF fk[1] = ANY (reference_tables) AND fk[4] = ANY (reference_tables) THEN
                CONTINUE; -- see "Foreign keys" above: not kept on Citus
            END IF;
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', fk[1], fk[2], fk[3]);
        END LOOP;
    END IF;

    -- Functions Citus cannot plan. A LANGUAGE sql function that is never
    -- inlined (SECURITY DEFINER, or with a SET clause) and has parameters
    -- fails on distributed tables ("could not create distributed plan ...
    -- parameters in SQL functions, which is not supported in Citus"): each
    -- becomes the same function in PL/pgSQL, its body a RETURN QUERY (or
    -- RETURN of the scalar), column names taking precedence over
    -- parameter names as in SQL functions. Signatures, attributes, owner
    -- and grants stay.
    FOR fn IN
        SELECT p.oid::regprocedure AS sig, p.proretset AS setof, p.prosrc AS src,
               pg_get_functiondef(p.oid) AS def
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = 'public'::regnamespace AND l.lanname = 'sql' AND p.pronargs > 0
          AND p.provolatile <> 'i' AND (p.prosecdef OR p.proconfig IS NOT NULL)
        ORDER BY 1
    LOOP
        IF fn.src ~* '\m(insert|update|delete|merge)\M' THEN
            RAISE EXCEPTION '0026: % writes; rewrite it for Citus by hand', fn.sig;
        END IF;
        body := regexp_replace(fn.src, ';\s*$', '');
        body := E'\n#variable_conflict use_column\nBEGIN\n    '
            || CASE WHEN fn.setof THEN 'RETURN QUERY ' || body ELSE 'RETURN (' || body || ')' END
            || E';\nEND\n';
        def := replace(fn.def, E'\n LANGUAGE sql\n', E'\n LANGUAGE plpgsql\n');
        def := left(def, strpos(def, 'AS $function$') + length('AS $function$') - 1) || body || '$function$';
        EXECUTE def;
    END LOOP;
    -- idempotency_sweep deletes: PL/pgSQL, and the scope of the calling
    -- transaction written out (app_scope_admits' CASE is refused in a
    -- distributed DELETE: "non-IMMUTABLE functions are not allowed in CASE
    -- or COALESCE statements", and a STABLE function of a column is too).
    EXECUTE $f$
CREATE OR REPLACE FUNCTION idempotency_sweep()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $body$
DECLARE
    v_gone bigint;
BEGIN
    DELETE FROM idempotency_keys
    WHERE expires_at <= now()
      AND ((nullif(current_setting('app.tenant_id', true), '') IS NOT NULL
            AND tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
        OR (nullif(current_setting('app.tenant_id', true), '') IS NULL
            AND current_setting('app.platform', true) IS DISTINCT FROM 'on'));
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    RETURN v_gone;
END
$body$
$f$;

    EXECUTE $f$
CREATE FUNCTION tenants_plan_exists() RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM plans WHERE name = NEW.plan) THEN
        RAISE EXCEPTION 'insert or update on table "tenants" violates the plan check'
            USING ERRCODE = '23503', DETAIL = format('Key (plan)=(%s) is not present in table "plans".', NEW.plan);
    END IF;
    RETURN NEW;
END
$body$
$f$;
    EXECUTE 'CREATE TRIGGER tenants_plan_exists BEFORE INSERT OR UPDATE OF plan ON tenants '
        'FOR EACH ROW EXECUTE FUNCTION tenants_plan_exists()';
END
$$;
