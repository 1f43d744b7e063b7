#!/usr/bin/env bash
# Start or stop an MLflow tracking server in the background (UI + REST API + proxied artifacts).
# usage: mlflow-server.sh start PORT BACKEND_URI ARTIFACTS [extra `mlflow server` options...]
#        mlflow-server.sh stop PORT
#   BACKEND_URI  e.g. postgresql+psycopg2://pathcnn@127.0.0.1:54329/mlflow (the database postgres.sh creates)
#   ARTIFACTS    --artifacts-destination: a local folder (created) or an s3:// gs:// wasbs:// URL; clients log
#                artifacts through the server (run artifact URIs are mlflow-artifacts:/...)
# env: HOST      interface to bind (default 127.0.0.1). The server has no authentication: bind another
#                interface only on a trusted network (a host name also needs --allowed-hosts NAME).
#      MLFLOW_BIN        mlflow executable (default: .venv/bin/mlflow of this repo)
#      MLFLOW_WORKERS    uvicorn workers (default 1)
#      MLFLOW_SERVER_DIR where server-PORT.pid and server-PORT.log go (default: .mlflow-server/ of this repo)
#      MLFLOW_SERVER_ENABLE_JOB_EXECUTION  false unless set: MLflow's background job runner (8 more
#                processes, about 1.3 GB more RSS) is not needed for logging runs and artifacts
set -euo pipefail
action=${1:-} port=${2:-}
if [ -z "$port" ] || { [ "$action" != start ] && [ "$action" != stop ]; }; then
  sed -n '3,4p' "$0" >&2
  exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
statedir=${MLFLOW_SERVER_DIR:-$repo/.mlflow-server}
pidfile=$statedir/server-$port.pid
logfile=$statedir/server-$port.log
host=${HOST:-127.0.0.1}
case "$host" in 0.0.0.0 | :: | "[::]") local_host=127.0.0.1 ;; *) local_host=$host ;; esac
url=http://$local_host:$port

running_pid() {  # the pid from the pid file when that process is still alive
  local pid
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 1
  grep -qa mlflow "/proc/$pid/cmdline" 2>/dev/null || return 1  # not a reused pid
  echo "$pid"
}
healthy() { curl -fsS --max-time 2 "$url/health" >/dev/null 2>&1; }

case "$action" in
  start)
    [ $# -ge 4 ] || { sed -n '3,4p' "$0" >&2; exit 2; }
    backend=$3 artifacts=$4
    shift 4
    mlflow=${MLFLOW_BIN:-$repo/.venv/bin/mlflow}
    if [ ! -x "$mlflow" ]; then
      echo "mlflow-server: $mlflow not found (run make venv, or set MLFLOW_BIN)" >&2
      exit 1
    fi
    if running_pid >/dev/null && healthy; then
      echo "mlflow-server: already running on $url (pid $(cat "$pidfile"))" >&2
      echo "export MLFLOW_TRACKING_URI=$url"
      exit 0
    fi
    if healthy; then
      echo "mlflow-server: something else already answers on $url; choose another port" >&2
      exit 1
    fi
    case "$artifacts" in
      *://*) ;;
      *) mkdir -p "$artifacts" && artifacts=$(cd "$artifacts" && pwd) ;;
    esac
    mkdir -p "$statedir"
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
    # setsid: the server leads its own process group, so stop can end it together with its uvicorn workers.
    setsid "$mlflow" server \
      --backend-store-uri "$backend" \
      --serve-artifacts --artifacts-destination "$artifacts" \
      --host "$host" --port "$port" --workers "${MLFLOW_WORKERS:-1}" \
      "$@" >"$logfile" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    echo "mlflow-server: starting on $url (pid $pid, log $logfile, artifacts $artifacts)" >&2
    for _ in $(seq 90); do
      if healthy; then
        echo "export MLFLOW_TRACKING_URI=$url"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      sleep 1
    done
    echo "mlflow-server: no answer from $url/health; last lines of $logfile:" >&2
    tail -n 30 "$logfile" >&2 || true
    bash "$0" stop "$port" || true
    exit 1
    ;;
  stop)
    if pid=$(running_pid); then
      # End the whole process group (mlflow server -> uvicorn -> workers); the pid leads it (setsid).
      if [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ]; then target=-$pid; else target=$pid; fi
      kill -TERM -- "$target" 2>/dev/null || true
      for _ in $(seq 20); do
        kill -0 -- "$target" 2>/dev/null || break
        sleep 0.5
      done
      kill -KILL -- "$target" 2>/dev/null || true
      echo "mlflow-server: stopped (pid $pid)" >&2
    fi
    rm -f "$pidfile"
    ;;
esac
