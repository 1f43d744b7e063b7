#!/usr/bin/env bash
# Start or stop a throw-away PostgreSQL (Debian's package) on 127.0.0.1 for the distributed-study tests
# and the team servers: role pathcnn owns the databases pathcnn (Optuna studies) and mlflow (MLflow tracking).
# usage: postgres.sh start|stop DATADIR PORT
# As root the server runs as the 'postgres' user; when that user cannot reach DATADIR (a clone under /root),
# the data directory is /var/tmp/pathcnn-postgres-PORT-HASH instead (HASH from the DATADIR path), and start
# prints where it is.
set -euo pipefail
action=$1 datadir=$2 port=$3
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ "$action" = start ] && [ -z "$bindir" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
# PostgreSQL refuses to run as root: run it as the 'postgres' system user the package creates.
# (from /: the postgres user may not be able to enter the working directory, a clone under /root)
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
if [ "$(id -u)" = 0 ]; then
  requested=$(realpath -m "$datadir")
  datadir=$requested
  parent=$(dirname "$requested")
  [ "$action" = start ] && mkdir -p "$parent"
  # The 'postgres' user must be able to enter the parent (initdb and the server open DATADIR by its path).
  if ! runuser -u postgres -- test -x "$parent" 2>/dev/null; then
    hash=$(printf '%s' "$requested" | sha256sum | cut -c1-8)
    datadir=/var/tmp/pathcnn-postgres-$port-$hash
    if [ "$action" = start ]; then
      mkdir -p "$datadir"
      chown postgres:postgres "$datadir"
      chmod 700 "$datadir"
    fi
  fi
fi
case "$action" in
  start)
    echo "postgres: data directory $datadir (port $port)" >&2
    if [ ! -s "$datadir/PG_VERSION" ]; then
      mkdir -p "$datadir"
      [ "$(id -u)" = 0 ] && chown postgres "$datadir"
      as_pg "$bindir/initdb" -D "$datadir" -U postgres --auth=trust >/dev/null
    fi
    if ! as_pg "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
      as_pg "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w \
        -o "-h 127.0.0.1 -p $port -k /tmp" start >/dev/null
    fi
    psql_pg() { as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres "$@"; }
    psql_pg -tc "SELECT 1 FROM pg_roles WHERE rolname='pathcnn'" | grep -q 1 || psql_pg -qc "CREATE ROLE pathcnn LOGIN"
    for db in pathcnn mlflow; do
      psql_pg -tc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
        || psql_pg -qc "CREATE DATABASE $db OWNER pathcnn"
    done
    ;;
  stop)
    [ -n "$bindir" ] && as_pg "$bindir/pg_ctl" -D "$datadir" stop -m fast >/dev/null 2>&1 || true
    ;;
esac
