# shellcheck shell=bash
# A private Redis Cluster for the tests: 6 redis-server processes on loopback (3 masters,
# 3 replicas, nothing kept on disk), made with `redis-cli --cluster create`. Sourced by
# scripts/services.sh; exports SESSION_TEST_REDIS_CLUSTER_URL. `stop_redis_cluster` stops what
# `start_redis_cluster` started (a cluster found already running is left alone).
#
# Ports: SESSION_TEST_CLUSTER_PORT (default 7301) and the five after it.

CLUSTER_BASE_PORT="${SESSION_TEST_CLUSTER_PORT:-7301}"
CLUSTER_DIR=""

cluster_ports() { seq "$CLUSTER_BASE_PORT" $((CLUSTER_BASE_PORT + 5)); }

cluster_ready() {
  local port
  for port in $(cluster_ports); do
    redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

start_redis_cluster() {
  if [ -n "${SESSION_TEST_REDIS_CLUSTER_URL:-}" ]; then
    echo "services: Redis Cluster from SESSION_TEST_REDIS_CLUSTER_URL"
    return 0
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "services: redis-server/redis-cli not installed: no local Redis Cluster; install redis-server or set SESSION_TEST_REDIS_CLUSTER_URL" >&2
    return 1
  fi
  if cluster_ready; then
    echo "services: a Redis Cluster already runs on 127.0.0.1:$CLUSTER_BASE_PORT-$((CLUSTER_BASE_PORT + 5)); using it"
  else
    CLUSTER_DIR="$(mktemp -d "${TMPDIR:-/tmp}/session-cluster.XXXXXX")"
    local port nodes=()
    for port in $(cluster_ports); do
      mkdir -p "$CLUSTER_DIR/$port"
      redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
        --dir "$CLUSTER_DIR/$port" --pidfile "$CLUSTER_DIR/$port/redis.pid" \
        --logfile "$CLUSTER_DIR/$port/redis.log" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --save "" --appendonly no --repl-diskless-sync-delay 0 >/dev/null || {
        echo "services: could not start redis-server on port $port" >&2
        return 1
      }
      nodes+=("127.0.0.1:$port")
    done
    for port in $(cluster_ports); do
      wait_for 15 redis-cli -h 127.0.0.1 -p "$port" ping || {
        echo "services: redis-server on port $port did not answer" >&2
        return 1
      }
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$CLUSTER_DIR/create.log" 2>&1 || {
      echo "services: redis-cli --cluster create failed (see $CLUSTER_DIR/create.log)" >&2
      return 1
    }
    wait_for 30 cluster_ready || {
      echo "services: the Redis Cluster did not reach cluster_state:ok" >&2
      return 1
    }
    echo "services: started a Redis Cluster (3 masters, 3 replicas) on 127.0.0.1:$CLUSTER_BASE_PORT-$((CLUSTER_BASE_PORT + 5))"
  fi
  export SESSION_TEST_REDIS_CLUSTER_URL="redis+cluster://127.0.0.1:$CLUSTER_BASE_PORT"
  # Where the tests find the processes (to kill a master) and how to restart one.
  export SESSION_TEST_REDIS_CLUSTER_DIR="$CLUSTER_DIR"
}

stop_redis_cluster() {
  [ -n "$CLUSTER_DIR" ] || return 0
  local port pid pids=()
  for port in $(cluster_ports); do
    if [ -f "$CLUSTER_DIR/$port/redis.pid" ]; then
      pid="$(cat "$CLUSTER_DIR/$port/redis.pid" 2>/dev/null)" || continue
      kill "$pid" 2>/dev/null && pids+=("$pid")
    fi
  done
  # The servers write their last files while exiting: wait (at most 10 s) before removing them.
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  done
  rm -rf "$CLUSTER_DIR" 2>/dev/null || true
  CLUSTER_DIR=""
  return 0
}
