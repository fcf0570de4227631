#!/usr/bin/env bash
# A private PostgreSQL for tests and benchmarks: its own data directory and port on 127.0.0.1,
# trust authentication.
#
#   scripts/pg.sh start   # initdb if needed, start, print the DSN
#   scripts/pg.sh env     # print `export ROLEGATE_TEST_PG=…`
#   scripts/pg.sh stop    # stop, keeping the data directory (start again resumes it)
#   scripts/pg.sh clean   # stop and delete the data directory
#
# ROLEGATE_PG_PORT (default 54329) and ROLEGATE_PG_DATA (default /tmp/rolegate-pg-$PORT) choose
# the instance, so several can run side by side. Installs Debian's `postgresql` when no server
# binaries are found. As root, the server runs as the `postgres` user: initdb refuses root.
set -euo pipefail

port=${ROLEGATE_PG_PORT:-54329}
data=${ROLEGATE_PG_DATA:-/tmp/rolegate-pg-$port}
dsn="postgres://postgres@127.0.0.1:$port/postgres"

find_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then
      echo "$dir"
      return
    fi
  done
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    dirname "$(command -v pg_ctl)"
  fi
}

bin=$(find_bin)
if [ -z "$bin" ] && [ "${1:-}" = start ]; then
  echo "pg.sh: installing postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
  bin=$(find_bin)
fi

# Runs a server binary as the data directory's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() {
  [ -n "$bin" ] && [ -f "$data/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

case "${1:-}" in
  start)
    [ -n "$bin" ] || { echo "pg.sh: no PostgreSQL server binaries found" >&2; exit 1; }
    if ! running; then
      if [ ! -f "$data/PG_VERSION" ]; then
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown postgres: "$data"
        chmod 700 "$data"
        as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$data.initdb.log" 2>&1 ||
          { cat "$data.initdb.log" >&2; exit 1; }
      fi
      # Sockets in the data directory, not /var/run/postgresql (absent without the package).
      as_owner "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $data -c max_connections=400" start >/dev/null ||
        { cat "$data/server.log" >&2; exit 1; }
    fi
    echo "$dsn"
    ;;
  env)
    echo "export ROLEGATE_TEST_PG=$dsn"
    ;;
  stop | clean)
    if running; then
      as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    fi
    if [ "$1" = clean ]; then
      rm -rf "$data" "$data.initdb.log"
    fi
    ;;
  *)
    echo "usage: $0 start|stop|clean|env" >&2
    exit 2
    ;;
esac
