#!/usr/bin/env bash
# cluster.sh: a throw-away Citus cluster on loopback, one coordinator and N
# workers, for make test-citus and for experiments (issue 14).
#
#   cluster.sh start DIR [BASEPORT] [WORKERS]   start it; prints the coordinator's URL
#   cluster.sh stop DIR                         stop it (the data stays in DIR)
#   cluster.sh with -- COMMAND [ARG...]         start one in a new temporary directory,
#                                               run COMMAND with TEST_CITUS_URL set,
#                                               then stop it and remove the directory
#                                               (always: trap on exit)
#
# BASEPORT defaults to $CITUS_BASEPORT, else 9730; WORKERS to $CITUS_WORKERS,
# else 2. Distributed tables get $CITUS_SHARD_COUNT shards, else 4 (Citus's
# default is 32): the tests need shards on every worker, not many of them,
# and a test database's migration distributes ~20 tables, whose time grows
# with the shard count (27 s at 32 shards, 11 s at 4, on 2 cores). The coordinator listens on the base port and the workers on the
# ports after it; when one of them is taken, the next range 10 ports up is
# tried. DIR/cluster.env records the ports and CITUS_URL, the superuser URL of
# the coordinator's postgres database.
#
# Copied from shared/vendor/citus/cluster.sh, with what docs/citus/README.md
# §0 found it lacks: wal_level=logical and output_plugin_libraries including
# citus (shard transfers), free ports, and a stop on exit. As root the
# servers run as the postgres user (initdb refuses root). Authentication is
# trust on 127.0.0.1 only, durability is off (fsync, synchronous_commit,
# full_page_writes, as internal/devenv's test servers): never keep data
# here. The postgres database of every node has the citus extension and the
# coordinator's has the workers registered; a database for tenantd needs
# more (devenv.Provision does it).
set -euo pipefail
# PostgreSQL 15's binaries (the Citus built by ensure.sh is for 15), even
# when another major version's pg_config comes first on PATH.
if [ -z "${PGBIN:-}" ]; then
	if [ -x /usr/lib/postgresql/15/bin/postgres ]; then PGBIN=/usr/lib/postgresql/15/bin
	else PGBIN=$(pg_config --bindir)
	fi
fi
PSQL=$PGBIN/psql
[ -x "$PSQL" ] || PSQL=psql

die() { echo "tools/citus/cluster.sh: $*" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
sql() { # sql PORT SQL...
	local port=$1; shift
	"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

# port_taken PORT: something listens on 127.0.0.1:PORT.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_base BASE N: the first of BASE, BASE+10, ... whose N+1 ports are free.
free_base() {
	local base=$1 n=$2 try p busy
	for try in $(seq 0 19); do
		busy=""
		for p in $(seq "$base" $((base + n))); do
			if port_taken "$p"; then busy=$p; break; fi
		done
		[ -z "$busy" ] && { echo "$base"; return 0; }
		base=$((base + 10))
	done
	return 1
}

# output_plugin_libraries exists from PostgreSQL 15.19 on; without citus in
# it, shard transfers in the logical modes fail with 'library "citus" may
# not be used as an output plugin'.
plugin_setting() {
	local described
	described=$(as_pg "$PGBIN/postgres" --describe-config 2>/dev/null) || die "$PGBIN/postgres --describe-config failed"
	if grep -q '^output_plugin_libraries' <<<"$described"; then
		echo "output_plugin_libraries = 'pgoutput, test_decoding, citus'"
	fi
}

node() { # node DIR NAME PORT
	local d="$1/$2" port=$3
	mkdir -p "$d"
	[ "$(id -u)" = 0 ] && chown postgres "$d"
	as_pg "$PGBIN/initdb" -D "$d/data" -A trust -U postgres -E UTF8 --locale=C --no-sync >"$d/initdb.log" 2>&1 ||
		die "initdb of $2 failed: $(tail -5 "$d/initdb.log")"
	cat >>"$d/data/postgresql.conf" <<-CONF
		# tools/citus/cluster.sh
		shared_preload_libraries = 'citus'
		listen_addresses = '127.0.0.1'
		port = $port
		unix_socket_directories = '$d'
		max_connections = 300
		max_worker_processes = 64
		shared_buffers = 128MB
		wal_level = logical
		citus.shard_count = ${CITUS_SHARD_COUNT:-4}
		$(plugin_setting)
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		log_min_messages = warning
	CONF
	as_pg "$PGBIN/pg_ctl" -D "$d/data" -l "$d/log" -w -t 60 start >/dev/null ||
		die "$2 did not start on port $port: $(tail -5 "$d/log")"
	sql "$port" -c "CREATE EXTENSION IF NOT EXISTS citus" >/dev/null
}

start() { # start DIR BASE WORKERS
	local dir=$1 base=$2 n=$3 i
	[ -e "$dir/cluster.env" ] && die "$dir already holds a cluster: stop it first (cluster.sh stop $dir)"
	mkdir -p "$dir"
	if [ "$(id -u)" = 0 ]; then
		chown postgres "$dir"
		as_pg test -x "$dir" || die "the postgres user cannot enter $dir: use a directory under /tmp"
	fi
	base=$(free_base "$base" "$n") || die "no free ports from $2 on (20 ranges of 10 tried)"
	local ports=$base
	for i in $(seq 1 "$n"); do ports="$ports $((base + i))"; done
	# Written first, so stop finds whatever was started if a step fails.
	printf 'CITUS_PORTS="%s"\nCITUS_URL="postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable"\n' \
		"$ports" "$base" >"$dir/cluster.env"
	node "$dir" coordinator "$base"
	sql "$base" -c "SELECT citus_set_coordinator_host('127.0.0.1', $base)" >/dev/null
	for i in $(seq 1 "$n"); do
		node "$dir" "worker$i" $((base + i))
		sql "$base" -c "SELECT citus_add_node('127.0.0.1', $((base + i)))" >/dev/null
	done
	local info
	info=$(sql "$base" -Atc "SELECT citus_version()" -c "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND groupid > 0")
	echo "citus cluster in $dir: coordinator 127.0.0.1:$base, workers on $(echo "$ports" | cut -d' ' -f2-) ($(echo "$info" | head -1 | cut -d' ' -f1-2), $(echo "$info" | tail -1) workers registered)"
	echo "CITUS_URL=postgres://postgres@127.0.0.1:$base/postgres?sslmode=disable"
}

stop() { # stop DIR
	local dir=$1 d
	for d in "$dir"/*/data; do
		[ -f "$d/postmaster.pid" ] || continue
		as_pg "$PGBIN/pg_ctl" -D "$d" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
	done
	rm -f "$dir/cluster.env"
}

cmd=${1:-}
case $cmd in
start)
	[ $# -ge 2 ] || die "usage: cluster.sh start DIR [BASEPORT] [WORKERS]"
	start "$2" "${3:-${CITUS_BASEPORT:-9730}}" "${4:-${CITUS_WORKERS:-2}}"
	;;
stop)
	[ $# -ge 2 ] || die "usage: cluster.sh stop DIR"
	stop "$2"
	;;
with)
	shift
	[ "${1:-}" = "--" ] && shift
	[ $# -ge 1 ] || die "usage: cluster.sh with -- COMMAND [ARG...]"
	dir=$(mktemp -d "${TMPDIR:-/tmp}/tenantd-citus.XXXXXX")
	chmod 755 "$dir"
	trap 'stop "$dir"; rm -rf "$dir"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	start "$dir" "${CITUS_BASEPORT:-9730}" "${CITUS_WORKERS:-2}"
	# shellcheck disable=SC1091
	. "$dir/cluster.env"
	TEST_CITUS_URL=$CITUS_URL "$@"
	;;
*)
	die "usage: cluster.sh start DIR [BASEPORT] [WORKERS] | stop DIR | with -- COMMAND [ARG...]"
	;;
esac
