#!/usr/bin/env bash
# Runs the same workload against a fresh Tern, a fresh Mosquitto (MQTT 3.1.1, QoS 1, persistent
# sessions) and a fresh ejabberd (XMPP with stream management, SQLite archive) in one run, RUNS
# times (default 3), and prints the ratio Tern/peer of every figure. PEERS (default mqtt,xmpp)
# picks the peers. Mosquitto's acknowledgements are not durable (it persists on an interval);
# ejabberd's follow its handling of the stanza, archive row included; Tern's follow a synced commit.
set -euo pipefail
cd "$(dirname "$0")/.."
# A run that breaks a correctness rule or a target still writes its JSON; keep going and report it.
run() { "$@" || echo "!! run did not pass: $*"; }
RUNS=${RUNS:-3}
PEERS=${PEERS:-mqtt,xmpp}
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    apt-get install -y --no-install-recommends mosquitto
fi
if ! ls /usr/lib/*/ejabberd-*/ebin/ejabberd.app >/dev/null 2>&1 \
    || ! ls /usr/lib/erlang/lib/p1_sqlite3-*/ebin >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends ejabberd erlang-p1-sqlite3
fi
cargo build --release -p tern -p tern-bench
B="${CARGO_TARGET_DIR:-target}/release/tern-bench"
out=bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)
mkdir -p "$out"
for i in $(seq 1 "$RUNS"); do
    run taskset -c 1 $B compare --peers "$PEERS" --scenario pairs --server-cpus 0 --pairs 1000 --rate 10000 --duration 20 --json "$out/compare-pairs-$i.json"
    run taskset -c 1 $B compare --peers "$PEERS" --scenario sweep --server-cpus 0 --pairs 1000 --start-rate 5000 --factor 1.25 --step-duration 5 --json "$out/compare-sweep-$i.json"
done
# Fan-out into one group (Tern), one topic (Mosquitto) or one room (ejabberd): 500,000 deliveries
# a second offered at 1,000 and at 10,000 online members.
for i in $(seq 1 "$RUNS"); do
    run taskset -c 1 $B compare --peers "$PEERS" --scenario fanout --server-cpus 0 --members 1000 --rate 500 --duration 10 --json "$out/fanout-1000-$i.json"
    run taskset -c 1 $B compare --peers "$PEERS" --scenario fanout --server-cpus 0 --members 10000 --rate 50 --duration 10 --json "$out/fanout-10000-$i.json"
done
$B median "$out"/compare-*.json | tee "$out/compare-medians.txt"
$B median "$out"/fanout-1000-*.json | tee "$out/fanout-1000-medians.txt"
$B median "$out"/fanout-10000-*.json | tee "$out/fanout-10000-medians.txt"
