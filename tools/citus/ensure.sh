#!/usr/bin/env bash
# ensure.sh: make sure the Citus extension is installed into the local
# PostgreSQL 15, building it from the vendored source when it is not.
#
# Installed means $(pg_config --pkglibdir)/citus.so exists. Otherwise the
# vendored Citus 13.2.2 (source archive, PostgreSQL 15.20 patch and build.sh,
# issue 14) is looked for, in this order, in:
#   $CITUS_SRC, ../shared/vendor/citus (beside the repository),
#   /work/shared/vendor/citus
# and built with its build.sh (about 2 minutes on 2 cores; needs root for
# apt-get and make install). Nothing is skipped: whatever is missing is
# named and the script fails.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)

die() { echo "tools/citus/ensure.sh: $*" >&2; exit 1; }

PG_CONFIG=${PG_CONFIG:-}
if [ -z "$PG_CONFIG" ]; then
	if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
	elif command -v pg_config >/dev/null 2>&1; then PG_CONFIG=$(command -v pg_config)
	else die "no pg_config: install PostgreSQL 15 (apt-get install postgresql-15 postgresql-server-dev-15)"
	fi
fi
version=$("$PG_CONFIG" --version)
case $version in
"PostgreSQL 15."*) ;;
*) die "pg_config ($PG_CONFIG) reports '$version'; Citus 13.2 is built for PostgreSQL 15" ;;
esac
libdir=$("$PG_CONFIG" --pkglibdir)
if [ -f "$libdir/citus.so" ]; then
	echo "citus: installed ($libdir/citus.so, $version)"
	exit 0
fi

src=""
for d in ${CITUS_SRC:+"$CITUS_SRC"} "$REPO/../shared/vendor/citus" /work/shared/vendor/citus; do
	if [ -f "$d/build.sh" ]; then src=$(cd "$d" && pwd); break; fi
done
[ -n "$src" ] || die "citus.so is not in $libdir and no vendored Citus source was found:
  looked for build.sh in \$CITUS_SRC (${CITUS_SRC:-unset}), $REPO/../shared/vendor/citus and /work/shared/vendor/citus.
  Set CITUS_SRC to the directory holding build.sh, citus-13.2.2.tar.gz and pg15-have_createdb_privilege.patch."
for f in citus-13.2.2.tar.gz pg15-have_createdb_privilege.patch; do
	[ -f "$src/$f" ] || die "$src/$f is missing: the vendored Citus source is incomplete"
done
[ "$(id -u)" -eq 0 ] || die "citus.so is not in $libdir; building it ($src/build.sh) installs packages and writes there: run as root"

# build.sh skips postgresql-server-dev-15 whenever `pg_config --pgxs` works,
# but pgxs.mk ships without the server headers (docs/citus/README.md §0):
# install the headers first when postgres.h is missing.
# build.sh runs apt-get install without an update: a clean machine has no
# package lists yet.
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ! -f "$("$PG_CONFIG" --includedir-server)/postgres.h" ]; then
	echo "citus: installing postgresql-server-dev-15 (the server headers are missing)"
	apt-get install -y -qq postgresql-server-dev-15 >/dev/null
fi
echo "citus: building from $src (about 2 minutes)"
start=$(date +%s)
bash "$src/build.sh"
[ -f "$libdir/citus.so" ] || die "$src/build.sh finished but $libdir/citus.so is still missing"
echo "citus: built and installed in $(($(date +%s) - start)) s ($libdir/citus.so)"
