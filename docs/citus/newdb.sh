#!/usr/bin/env bash
# newdb.sh DB OWNER BASEPORT: create a Citus-enabled database on the lab cluster
set -euo pipefail
DB=$1 OWNER=$2 BASE=${3:-9700}
P() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }
P -p $BASE -c "SET citus.enable_create_database_propagation = on" -c "CREATE DATABASE $DB OWNER $OWNER"
for p in $((BASE+1)) $((BASE+2)); do P -p $p -d $DB -c "CREATE EXTENSION citus"; done
P -p $BASE -d $DB -c "CREATE EXTENSION citus" -c "SELECT citus_set_coordinator_host('127.0.0.1', $BASE)" \
  -c "SELECT citus_add_node('127.0.0.1', $((BASE+1)))" -c "SELECT citus_add_node('127.0.0.1', $((BASE+2)))" >/dev/null
P -p $BASE -d $DB -Atc "select count(*)||' workers in '||current_database() from pg_dist_node where groupid>0"
