-- Nothing to undo on plain PostgreSQL (0026 did nothing there). On Citus
-- the tables are refused back: undistributing copies every shard's rows
-- back to the coordinator, which is an operation to plan, not a migration
-- step (see docs/citus/README.md; by hand, as the owner, one table at a
-- time: SELECT undistribute_table('<table>', cascade_via_foreign_keys => true)).
DO $$
BEGIN
    -- Nested: pg_dist_partition exists only with the extension.
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        IF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'products'::regclass) THEN
            RAISE EXCEPTION 'migration 0026 cannot be rolled back on Citus: the tables are distributed; undistribute them by hand (undistribute_table) or restore a backup'
                USING ERRCODE = 'feature_not_supported';
        END IF;
    END IF;
END
$$;
