#!/usr/bin/env bash
# A few seconds of every scenario with small numbers, so the load tool cannot rot. Each run
# exits non-zero on any lost, duplicated or reordered message; no timing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p tern -p tern-bench
B="${CARGO_TARGET_DIR:-target}/debug/tern-bench"
$B idle --spawn --connections 200 --duration 2 --quiet
$B pairs --spawn --pairs 20 --rate 400 --duration 2 --quiet
$B sweep --spawn --pairs 10 --start-rate 100 --factor 2 --max-rate 400 --step-duration 1 --quiet
$B sync-storm --spawn --users 50 --messages 20 --quiet
$B fanout --spawn --members 40 --senders 2 --rate 40 --duration 2 --quiet
$B fanout --spawn --members 30 --rate 20 --duration 2 --set group_write_diffusion_max=10 --quiet
$B search --spawn --messages 3000 --peers 4 --rounds 2 --quiet
$B pairs --spawn --system mqtt --pairs 10 --rate 200 --duration 2 --quiet
$B pairs --spawn --system xmpp --pairs 10 --rate 200 --duration 2 --quiet
$B sweep --spawn --system xmpp --pairs 10 --start-rate 100 --factor 2 --max-rate 400 --step-duration 1 --quiet
$B fanout --spawn --system xmpp --members 20 --senders 2 --rate 20 --duration 2 --quiet
# compare runs Tern, then Mosquitto and ejabberd (the default peers).
$B compare --scenario pairs --pairs 10 --rate 200 --duration 2 --quiet
$B compare --scenario fanout --members 20 --rate 20 --duration 2 --quiet
# The per-thread split script, on the same debug build.
PROFILE=debug PAIRS=10 RATE=200 DURATION=2 bash bench/threads.sh >/dev/null
# Three nodes over PostgreSQL and Redis, every message crossing nodes.
source scripts/services.sh
start_postgres
ensure_redis
db="tern_test_bench_$$"
psql_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/psql
"$psql_bin" -X -q -h 127.0.0.1 -p "$TERN_PG_PORT" -U postgres -d postgres -c "CREATE DATABASE $db"
redis_port=6391
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "/tmp/tern-smoke-redis-$$.pid" --logfile /dev/null
trap 'kill "$(cat /tmp/tern-smoke-redis-$$.pid)" 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
$B pairs --spawn --nodes 3 --set "store=$TERN_TEST_POSTGRES/$db" --set "redis_url=redis://127.0.0.1:$redis_port" \
    --pairs 12 --rate 200 --duration 2 --quiet
