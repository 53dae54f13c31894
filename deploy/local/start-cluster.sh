#!/usr/bin/env bash
# Starts a loopback Runtime cluster on this machine: one seed node (coordinator role, no worker slots) and N worker
# nodes, each an `rt node` process in the background, all on 127.0.0.1 and sharing one SQLite journal folder.
#
#   deploy/local/start-cluster.sh [WORKERS]          (default 2 workers)
#   rt finetune hocon/runs/quickstart.conf --join akka.tcp://runtime@127.0.0.1:4053
#   deploy/local/stop-cluster.sh
#
# Settings (environment):
#   RT              the rt command (default: rt on PATH), e.g. RT=artifacts/rt/rt or RT="dotnet /path/to/rt.dll"
#   RT_CLUSTER_DIR  pid files (pids/), logs (logs/) and the shared journal (data/); default <repo>/.runtime/local-cluster
#   RT_SEED_PORT    the seed's port (default 4053, as hocon/seed.conf); workers take any free port
#   RT_SLOTS        worker slots per worker node (default 1; `auto` would count every core in each node)
#   RT_HOCON        the folder holding seed.conf and node.conf (default <repo>/hocon)
#   RT_EXTRA_CONFIG more HOCON files every node reads after its own (space-separated), e.g.
#                   RT_EXTRA_CONFIG=hocon/persistence-postgres.conf with RUNTIME_POSTGRES set, for the PostgreSQL journal
#   RT_UP_TIMEOUT   seconds to wait for each node to say it is up (default 60)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
workers="${1:-2}"
read -r -a rt <<< "${RT:-rt}"
dir="${RT_CLUSTER_DIR:-$root/.runtime/local-cluster}"
port="${RT_SEED_PORT:-4053}"
slots="${RT_SLOTS:-1}"
hocon="${RT_HOCON:-$root/hocon}"
up_timeout="${RT_UP_TIMEOUT:-60}"
seed="akka.tcp://runtime@127.0.0.1:$port"
extra=()
for f in ${RT_EXTRA_CONFIG:-}; do
  [[ -f "$f" ]] || { echo "start-cluster: RT_EXTRA_CONFIG: $f not found" >&2; exit 1; }
  extra+=(--config "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
done

if ! [[ "$workers" =~ ^[0-9]+$ ]]; then
  echo "start-cluster: WORKERS must be a whole number (got '$workers')" >&2
  exit 1
fi
if ! command -v "${rt[0]}" > /dev/null; then
  echo "start-cluster: '${rt[0]}' not found; set RT to the rt command (RT=artifacts/rt/rt, or RT=\"dotnet path/rt.dll\")" >&2
  exit 1
fi
for f in seed.conf node.conf; do
  [[ -f "$hocon/$f" ]] || { echo "start-cluster: $hocon/$f not found (set RT_HOCON)" >&2; exit 1; }
done

mkdir -p "$dir/pids" "$dir/logs" "$dir/data"
for pidfile in "$dir"/pids/*.pid; do
  [[ -e "$pidfile" ]] || continue
  if kill -0 "$(cat "$pidfile")" 2> /dev/null; then
    echo "start-cluster: $(basename "$pidfile" .pid) is already running (pid $(cat "$pidfile")); run deploy/local/stop-cluster.sh first" >&2
    exit 1
  fi
  rm -f "$pidfile"
done

# Starts `rt node` in the background as NAME: stdout and stderr to logs/NAME.log, its pid in pids/NAME.pid.
# exec in the subshell keeps the pid the rt process's own, so stop-cluster.sh signals rt itself.
start_node() {
  local name="$1"; shift
  ( exec "${rt[@]}" node "$@" ) < /dev/null > "$dir/logs/$name.log" 2>&1 &
  echo $! > "$dir/pids/$name.pid"
}

# Waits until NAME's log says the node is up; fails (showing the log) if the process ends or time runs out.
wait_up() {
  local name="$1" pid
  pid="$(cat "$dir/pids/$name.pid")"
  for ((i = 0; i < up_timeout * 5; i++)); do
    if grep -q " is up: " "$dir/logs/$name.log"; then
      grep " is up: " "$dir/logs/$name.log" | head -1
      return 0
    fi
    if ! kill -0 "$pid" 2> /dev/null; then
      echo "start-cluster: $name (pid $pid) exited before it was up; its log:" >&2
      tail -n 20 "$dir/logs/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "start-cluster: $name (pid $pid) was not up after ${up_timeout}s; its log: $dir/logs/$name.log" >&2
  return 1
}

fail() {
  echo "start-cluster: stopping what started" >&2
  RT_CLUSTER_DIR="$dir" "$here/stop-cluster.sh" >&2 || true
  exit 1
}

# The seed: its own address first in seed-nodes, so it forms the cluster. It hosts run coordinators, not workers.
start_node seed --config "$hocon/seed.conf" ${extra[@]+"${extra[@]}"} --hostname 127.0.0.1 --port "$port" --seed "$seed" \
  --roles coordinator --data-dir "$dir/data"
wait_up seed || fail

for ((w = 1; w <= workers; w++)); do
  start_node "worker-$w" --config "$hocon/node.conf" ${extra[@]+"${extra[@]}"} --hostname 127.0.0.1 --port 0 --seed "$seed" \
    --roles worker --slots "$slots" --data-dir "$dir/data"
done
for ((w = 1; w <= workers; w++)); do
  wait_up "worker-$w" || fail
done

echo "cluster up: seed $seed and $workers worker node(s) of $slots slot(s); logs in $dir/logs"
echo "  submit:  ${RT:-rt} finetune SPEC.conf --join $seed"
echo "  stop:    $here/stop-cluster.sh"
