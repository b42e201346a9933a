# shellcheck shell=bash
# Finds (or starts) the PostgreSQL, Redis and MySQL/MariaDB servers the backend tests run
# against, starts a private Redis Cluster, and exports SESSION_TEST_POSTGRES_URL /
# SESSION_TEST_REDIS_URL / SESSION_TEST_MYSQL_URL / SESSION_TEST_REDIS_CLUSTER_URL. Sourced by
# scripts/test.
#
# A variable already set is used as it is. Otherwise the usual local ports are tried; a server
# installed but stopped is started with the local service commands. What cannot be found is said
# plainly; under CI (or SESSION_TEST_REQUIRE=1) that is a failure, never a silent skip.

require_services() {
  [ -n "${CI:-}" ] || [ "${SESSION_TEST_REQUIRE:-}" = "1" ]
}

wait_for() { # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.5
  done
}

postgres_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
redis_ready() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]
  else
    (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 && [[ "$reply" == +PONG* ]])
  fi
}

find_postgres() {
  if [ -n "${SESSION_TEST_POSTGRES_URL:-}" ]; then
    echo "services: PostgreSQL from SESSION_TEST_POSTGRES_URL"
    return 0
  fi
  if ! command -v pg_isready >/dev/null 2>&1; then
    echo "services: PostgreSQL client tools (pg_isready) are not installed; install postgresql or set SESSION_TEST_POSTGRES_URL" >&2
    return 1
  fi
  if ! postgres_ready && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for version in /etc/postgresql/*; do
      echo "services: starting PostgreSQL cluster $(basename "$version")/main"
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start || true
    done
    wait_for 30 postgres_ready || true
  fi
  if postgres_ready; then
    export SESSION_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
    echo "services: PostgreSQL at 127.0.0.1:5432"
    return 0
  fi
  echo "services: no PostgreSQL on 127.0.0.1:5432 and none could be started; set SESSION_TEST_POSTGRES_URL" >&2
  return 1
}

find_redis() {
  if [ -n "${SESSION_TEST_REDIS_URL:-}" ]; then
    echo "services: Redis from SESSION_TEST_REDIS_URL"
    return 0
  fi
  if ! redis_ready && command -v redis-server >/dev/null 2>&1; then
    echo "services: starting redis-server on 127.0.0.1:6379 (nothing kept on disk)"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
    wait_for 15 redis_ready || true
  fi
  if redis_ready; then
    export SESSION_TEST_REDIS_URL="redis://127.0.0.1:6379"
    echo "services: Redis at 127.0.0.1:6379"
    return 0
  fi
  echo "services: no Redis on 127.0.0.1:6379 and redis-server is not installed; install redis-server or set SESSION_TEST_REDIS_URL" >&2
  return 1
}

mysql_ready() {
  if command -v mysqladmin >/dev/null 2>&1; then
    mysqladmin -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1
  else
    (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null
  fi
}

find_mysql() {
  if [ -n "${SESSION_TEST_MYSQL_URL:-}" ]; then
    echo "services: MySQL/MariaDB from SESSION_TEST_MYSQL_URL"
    return 0
  fi
  if ! mysql_ready; then
    if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/mariadb ]; then
      echo "services: starting MariaDB"
      service mariadb start >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1 && [ -x /etc/init.d/mysql ]; then
      echo "services: starting MySQL"
      service mysql start >/dev/null 2>&1 || true
    fi
    wait_for 30 mysql_ready || true
  fi
  if mysql_ready; then
    export SESSION_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306/test"
    echo "services: MySQL/MariaDB at 127.0.0.1:3306 (user root, database test)"
    return 0
  fi
  echo "services: no MySQL/MariaDB on 127.0.0.1:3306 and none could be started; install mariadb-server or set SESSION_TEST_MYSQL_URL" >&2
  return 1
}

# shellcheck source=scripts/redis-cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/redis-cluster.sh"

prepare_services() {
  local missing=0
  find_postgres || missing=1
  find_redis || missing=1
  find_mysql || missing=1
  start_redis_cluster || missing=1
  if [ $missing -ne 0 ]; then
    if require_services; then
      echo "services: a server is missing and CI/SESSION_TEST_REQUIRE=1 is set: failing" >&2
      return 1
    fi
    echo "services: WARNING: the backend tests of the missing servers will be SKIPPED (loudly)" >&2
  fi
  return 0
}
