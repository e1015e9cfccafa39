#!/usr/bin/env bash
# A throwaway 3-master Redis Cluster on 127.0.0.1, for the cluster tests
# (test/redisCluster.test.ts):
#
#   bash scripts/redis-cluster.sh start   # prints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
#   REDIS_CLUSTER_NODES=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 npx vitest run test/redisCluster.test.ts
#   bash scripts/redis-cluster.sh stop
#
# Three `redis-server --cluster-enabled yes` on REDIS_CLUSTER_PORT (default
# 7101) and the two ports after it, without persistence, each with its own
# directory and nodes.conf under one temporary directory. `start` prints the
# nodes' addresses on stdout (everything else goes to stderr) once
# `cluster_state:ok`; `stop` stops exactly the servers `start` started (their
# pid files) and deletes the directory. Another Redis (6379, say) is never
# touched.
set -euo pipefail

first="${REDIS_CLUSTER_PORT:-7101}"
ports=("$first" "$((first + 1))" "$((first + 2))")
state="${TMPDIR:-/tmp}/effect-token-budget-cluster-$first"

say() { echo "redis-cluster: $*" >&2; }
answers() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]; }
nodes() { local IFS=,; local list=("${ports[@]/#/127.0.0.1:}"); echo "${list[*]}"; }

# The pid in a server's pid file, if that process is still our redis-server.
pid_of() {
  local file="$state/$1/redis.pid" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file")"
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "redis-server.*:$1" && echo "$pid"
}

stop() {
  [ -d "$state" ] || { say "nothing to stop ($state does not exist)"; return 0; }
  local pids=() pid
  for port in "${ports[@]}"; do
    if pid="$(pid_of "$port")"; then pids+=("$pid"); fi
  done
  if [ "${#pids[@]}" -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 100); do
      local alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    say "stopped ${pids[*]}"
  fi
  rm -rf "$state"
}

start() {
  if [ -d "$state" ]; then
    for port in "${ports[@]}"; do
      if pid_of "$port" >/dev/null; then
        say "already running from $state: stop it first (bash scripts/redis-cluster.sh stop)"
        exit 1
      fi
    done
    rm -rf "$state"
  fi
  for port in "${ports[@]}"; do
    if answers "$port" || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      say "port $port is taken: set REDIS_CLUSTER_PORT to the first of three free ports"
      exit 1
    fi
  done
  mkdir -p "$state"
  # From here on, a failure stops what was started.
  trap 'stop; exit 1' ERR
  for port in "${ports[@]}"; do
    mkdir -p "$state/$port"
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file "$state/$port/nodes.conf" \
      --dir "$state/$port" --pidfile "$state/$port/redis.pid" --logfile "$state/$port/redis.log" \
      --save "" --appendonly no
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 100); do answers "$port" && break; sleep 0.1; done
    answers "$port" || { say "127.0.0.1:$port did not start (see $state/$port/redis.log)"; false; }
  done
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >&2
  for _ in $(seq 300); do
    local ok=1
    for port in "${ports[@]}"; do
      redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q "cluster_state:ok" || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
  done
  [ "$ok" = 1 ] || { say "the cluster did not reach cluster_state:ok"; false; }
  trap - ERR
  say "3 masters up: $(nodes) (state in $state)"
  nodes
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  nodes) nodes ;;
  *) echo "usage: bash scripts/redis-cluster.sh start|stop|nodes" >&2; exit 2 ;;
esac
