#!/usr/bin/env bash
# The services the test suite needs beside Cargo, started on private ports: sourced by
# scripts/test. A server already listening on the port is reused; otherwise PostgreSQL is
# installed from Debian's packages when missing, initialised in a throwaway directory, and
# started. Exports TERN_TEST_POSTGRES (a server URL without a database; each test creates its
# own database there).
set -euo pipefail

TERN_SERVICES_DIR="${TERN_SERVICES_DIR:-/tmp/tern-test-services}"
TERN_PG_PORT="${TERN_PG_PORT:-5433}"

# Redis for the cluster tests: each test starts redis-server on a port of its own (so it can kill
# and restart it), so only the binary is needed here.
ensure_redis() {
    if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
        return 0
    fi
    echo "services: installing Redis" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
}

start_postgres() {
    local url="postgres://postgres@127.0.0.1:${TERN_PG_PORT}"
    export TERN_TEST_POSTGRES="${TERN_TEST_POSTGRES:-$url}"
    if [ "$TERN_TEST_POSTGRES" != "$url" ]; then
        return 0 # the caller named its own server
    fi
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$bin" ]; then
        echo "services: installing PostgreSQL" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends postgresql >/dev/null
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$TERN_PG_PORT"; then
        # A server left by an earlier run: drop the databases its tests made.
        "$bin/psql" -X -q -h 127.0.0.1 -p "$TERN_PG_PORT" -U postgres -d postgres -At \
            -c "SELECT datname FROM pg_database WHERE datname LIKE 'tern\_test\_%' OR datname LIKE 'tern\_e2e\_%'" |
            while read -r db; do
                "$bin/psql" -X -q -h 127.0.0.1 -p "$TERN_PG_PORT" -U postgres -d postgres \
                    -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null
            done
        return 0
    fi
    local data="$TERN_SERVICES_DIR/pgdata"
    rm -rf "$data"
    mkdir -p "$data"
    # initdb refuses to run as root.
    local as=()
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres:postgres "$TERN_SERVICES_DIR"
        as=(runuser -u postgres --)
    fi
    "${as[@]}" "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
    # Durability stays on (fsync, synchronous_commit): the crash tests depend on it.
    "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $TERN_PG_PORT -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=400" start >/dev/null
    echo "services: PostgreSQL on 127.0.0.1:$TERN_PG_PORT" >&2
}
