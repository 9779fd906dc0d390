#!/usr/bin/env bash
# provision_citus.sh DB: what devenv.Provision must add on Citus (as the superuser):
# the database on every node, the extension in it on every node, the nodes
# registered, and the owner role distributed outside any transaction.
set -euo pipefail
DB=$1
./newdb.sh "$DB" tenantd_owner
# Make tenantd_owner a distributed role now, through Citus's superuser path:
# inside a migration transaction Citus would propagate it as tenantd_owner
# itself, and PostgreSQL 15 refuses "ALTER ROLE ... NOSUPERUSER" to a
# non-superuser ("must be superuser to alter superuser roles or change
# superuser attribute").
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 9700 -U tenantd_owner -d "$DB" \
  -c "CREATE FUNCTION citus_bootstrap_owner() RETURNS int LANGUAGE sql AS 'SELECT 1'" \
  -c "DROP FUNCTION citus_bootstrap_owner()"
