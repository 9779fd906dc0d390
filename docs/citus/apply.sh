#!/usr/bin/env bash
# apply.sh DIR DB: apply DIR/*.up.sql in order, each file as ONE simple-protocol
# query (as golang-migrate's pgx driver does), as tenantd_owner; go on after errors.
DIR=$1 DB=$2
psql -X -q -h 127.0.0.1 -p 9700 -U tenantd_owner -d $DB -c "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)"
for f in "$DIR"/*.up.sql; do
  out=$(psql -X -q -h 127.0.0.1 -p 9700 -U tenantd_owner -d $DB -v ON_ERROR_STOP=1 -c "$(cat "$f")" 2>&1 >/dev/null)
  rc=$?
  echo "== $(basename "$f") rc=$rc"; [ -n "$out" ] && echo "$out" | sed 's/^/   /'
done
