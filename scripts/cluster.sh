#!/usr/bin/env bash
# Runs a three-node Tern cluster on this machine: PostgreSQL and Redis from Debian's packages,
# then three nodes sharing them.
#
#   bash scripts/cluster.sh up      # install what is missing, start everything, print the addresses
#   bash scripts/cluster.sh down    # stop the nodes (draining), Redis and PostgreSQL
#
# Everything lives in ./tern-cluster (data, logs, pid files). Ports: PostgreSQL 5434, Redis 6380,
# node N (1..3) TCP 77N0 and HTTP 77N1.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/tern-cluster"
pg_port=5434
redis_port=6380
store="postgres://postgres@127.0.0.1:$pg_port/tern"
redis="redis://127.0.0.1:$redis_port"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install_missing() {
    local need=()
    [ -n "$(pg_bin)" ] || need+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    if [ ${#need[@]} -gt 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

up() {
    install_missing
    mkdir -p "$dir"
    local bin
    bin=$(pg_bin)
    if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port"; then
        if [ ! -f "$dir/pg/PG_VERSION" ]; then
            mkdir -p "$dir/pg"
            [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/pg"
            as_postgres "$bin/initdb" -D "$dir/pg" -U postgres -A trust -E UTF8 >/dev/null
        fi
        as_postgres "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg/server.log" -w \
            -o "-p $pg_port -c listen_addresses=127.0.0.1 -k /tmp" start >/dev/null
    fi
    "$bin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -At \
        -c "SELECT 1 FROM pg_database WHERE datname = 'tern'" | grep -q 1 ||
        "$bin/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "CREATE DATABASE tern"
    echo "PostgreSQL on 127.0.0.1:$pg_port (database tern)"
    if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
        redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
            --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
        for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    echo "Redis on 127.0.0.1:$redis_port"
    cargo build --release --quiet
    for n in 1 2 3; do
        if [ -f "$dir/node$n.pid" ] && kill -0 "$(cat "$dir/node$n.pid")" 2>/dev/null; then
            echo "node $n already running"
            continue
        fi
        # Each node migrates the schema on start; they may start together.
        TERN_NODE_ID=$n ./target/release/tern serve --store "$store" --redis "$redis" \
            --tcp-addr "127.0.0.1:77${n}0" --http-addr "127.0.0.1:77${n}1" \
            >"$dir/node$n.log" 2>&1 &
        echo $! >"$dir/node$n.pid"
    done
    for n in 1 2 3; do
        for _ in $(seq 100); do
            curl -fsS "http://127.0.0.1:77${n}1/readyz" >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
    echo "nodes:"
    curl -fsS "http://127.0.0.1:7711/v1/nodes"
    echo
}

down() {
    for n in 1 2 3; do
        if [ -f "$dir/node$n.pid" ]; then
            # SIGTERM drains: the node leaves the list, finishes its commits and says goodbye.
            kill "$(cat "$dir/node$n.pid")" 2>/dev/null || true
            rm -f "$dir/node$n.pid"
        fi
    done
    wait 2>/dev/null || true
    sleep 1
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    local bin
    bin=$(pg_bin)
    if [ -n "$bin" ] && [ -f "$dir/pg/PG_VERSION" ]; then
        as_postgres "$bin/pg_ctl" -D "$dir/pg" -m fast stop >/dev/null 2>&1 || true
    fi
    echo "stopped (data kept in $dir; remove it to start afresh)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *)
        echo "usage: $0 up|down" >&2
        exit 2
        ;;
esac
