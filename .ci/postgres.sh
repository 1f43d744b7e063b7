#!/usr/bin/env bash
# Start or stop a throw-away PostgreSQL (Debian's package) on 127.0.0.1 for the distributed-study tests.
# usage: postgres.sh start|stop DATADIR PORT
set -euo pipefail
action=$1 datadir=$2 port=$3
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ "$action" = start ] && [ -z "$bindir" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
# PostgreSQL refuses to run as root: run it as the 'postgres' system user the package creates.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$action" in
  start)
    if [ ! -s "$datadir/PG_VERSION" ]; then
      mkdir -p "$datadir"
      [ "$(id -u)" = 0 ] && chown postgres "$datadir"
      as_pg "$bindir/initdb" -D "$datadir" -U postgres --auth=trust >/dev/null
    fi
    if ! as_pg "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
      as_pg "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w \
        -o "-h 127.0.0.1 -p $port -k /tmp" start >/dev/null
    fi
    as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -tc "SELECT 1 FROM pg_roles WHERE rolname='pathcnn'" \
      | grep -q 1 || as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE ROLE pathcnn LOGIN"
    as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -tc "SELECT 1 FROM pg_database WHERE datname='pathcnn'" \
      | grep -q 1 || as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE pathcnn OWNER pathcnn"
    ;;
  stop)
    [ -n "$bindir" ] && as_pg "$bindir/pg_ctl" -D "$datadir" stop -m fast >/dev/null 2>&1 || true
    ;;
esac
