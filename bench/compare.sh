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
has() { [[ ",$PEERS," == *",$1,"* ]]; }
# Mosquitto at Tern's scale: 1,000 pairs at 10,000 msg/s, and the sweep from 5,000 msg/s.
# ejabberd sustains a few hundred durable messages a second on one core, so it gets the same
# workloads at its own scale (100 pairs at 500 msg/s, the sweep from 250 msg/s), Tern beside it.
for i in $(seq 1 "$RUNS"); do
    if has mqtt; then
        run taskset -c 1 $B compare --peers mqtt --scenario pairs --server-cpus 0 --pairs 1000 --rate 10000 --duration 20 --json "$out/compare-pairs-$i.json"
        run taskset -c 1 $B compare --peers mqtt --scenario sweep --server-cpus 0 --pairs 1000 --start-rate 5000 --factor 1.25 --step-duration 5 --json "$out/compare-sweep-$i.json"
    fi
    if has xmpp; then
        run taskset -c 1 $B compare --peers xmpp --scenario pairs --server-cpus 0 --pairs 100 --rate 500 --duration 20 --json "$out/xmpp-pairs-$i.json"
        run taskset -c 1 $B compare --peers xmpp --scenario sweep --server-cpus 0 --pairs 100 --start-rate 250 --factor 1.5 --step-duration 5 --json "$out/xmpp-sweep-$i.json"
    fi
done
# Fan-out into one group (Tern), one topic (Mosquitto) or one room (ejabberd): 500,000 deliveries
# a second offered at 1,000 and at 10,000 online members against Mosquitto; 10,000 a second at
# 1,000 members against ejabberd.
for i in $(seq 1 "$RUNS"); do
    if has mqtt; then
        run taskset -c 1 $B compare --peers mqtt --scenario fanout --server-cpus 0 --members 1000 --rate 500 --duration 10 --json "$out/fanout-1000-$i.json"
        run taskset -c 1 $B compare --peers mqtt --scenario fanout --server-cpus 0 --members 10000 --rate 50 --duration 10 --json "$out/fanout-10000-$i.json"
    fi
    if has xmpp; then
        run taskset -c 1 $B compare --peers xmpp --scenario fanout --server-cpus 0 --members 1000 --rate 10 --duration 10 --json "$out/xmpp-fanout-1000-$i.json"
    fi
done
for set in compare-pairs compare-sweep xmpp-pairs xmpp-sweep fanout-1000 fanout-10000 xmpp-fanout-1000; do
    ls "$out"/$set-*.json >/dev/null 2>&1 || continue
    $B median "$out"/$set-*.json | tee "$out/$set-medians.txt"
done
