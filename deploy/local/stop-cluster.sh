#!/usr/bin/env bash
# Stops the loopback cluster start-cluster.sh started: SIGTERM to every worker node, then to the seed, each leaving
# the cluster gracefully (its shards handed off) and exiting 0; waits for every process and reports how each ended.
#
#   deploy/local/stop-cluster.sh
#
# Settings (environment): RT_CLUSTER_DIR as for start-cluster.sh; RT_STOP_TIMEOUT seconds to wait for a node to leave
# (default 60) before it is killed (and this script exits 1).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${RT_CLUSTER_DIR:-$root/.runtime/local-cluster}"
stop_timeout="${RT_STOP_TIMEOUT:-60}"
status=0

if [[ ! -d "$dir/pids" ]]; then
  echo "stop-cluster: no cluster in $dir (no pids/ folder)"
  exit 0
fi

# The pid of NAME when it still runs as an `rt node` process (a stale pid file names a finished or reused pid).
live_pid() {
  local pidfile="$dir/pids/$1.pid" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2> /dev/null || return 1
  ps -o args= -p "$pid" | grep -q " node " || return 1
  echo "$pid"
}

signal() {
  local name="$1" pid
  if pid="$(live_pid "$name")"; then
    kill -TERM "$pid"
    echo "$name: SIGTERM sent to pid $pid"
  else
    echo "$name: not running"
    rm -f "$dir/pids/$name.pid"
  fi
}

# Waits for NAME's process to end; prints the node's last word from its log.
await() {
  local name="$1" pidfile="$dir/pids/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  for ((i = 0; i < stop_timeout * 5; i++)); do
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2> /dev/null; then
    echo "$name: still running after ${stop_timeout}s; killing pid $pid" >&2
    kill -KILL "$pid" 2> /dev/null
    status=1
  else
    echo "$name: $(grep -E "^runtime node .* stopped: " "$dir/logs/$name.log" | tail -1 || echo "exited (no 'stopped' line in $dir/logs/$name.log)")"
    grep -q "stopped: left the cluster" "$dir/logs/$name.log" || status=1
  fi
  rm -f "$pidfile"
}

# Workers first, all at once, so the seed sees them leave; then the seed.
workers=()
for pidfile in "$dir"/pids/worker-*.pid; do
  [[ -e "$pidfile" ]] && workers+=("$(basename "$pidfile" .pid)")
done
for name in "${workers[@]}"; do signal "$name"; done
for name in "${workers[@]}"; do await "$name"; done
if [[ -f "$dir/pids/seed.pid" ]]; then
  signal seed
  await seed
fi
exit $status
