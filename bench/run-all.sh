#!/usr/bin/env bash
# Runs every benchmark of bench/README.md RUNS times (default 3) on this machine and prints the
# medians. Results (JSON and SVG) go to bench/results/<date>-<commit>/.
#
# The server is pinned to CPU 0 and the load tool to CPU 1, so that each has a core of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
# A run that breaks a correctness rule or a target still writes its JSON; keep going and report it.
run() { "$@" || echo "!! run did not pass: $*"; }
RUNS=${RUNS:-3}
cargo build --release -p tern -p tern-bench
B="${CARGO_TARGET_DIR:-target}/release/tern-bench"
out=bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD)
mkdir -p "$out"
pin="taskset -c 1"
for i in $(seq 1 "$RUNS"); do
    run $pin $B idle --spawn --server-cpus 0 --connections 15000 --duration 30 --json "$out/idle-$i.json"
    run $pin $B pairs --spawn --server-cpus 0 --pairs 1000 --rate 10000 --duration 20 --json "$out/pairs-$i.json" --svg "$out/pairs-$i.svg"
    run $pin $B sweep --spawn --server-cpus 0 --pairs 1000 --start-rate 5000 --factor 1.25 --step-duration 5 --json "$out/sweep-$i.json" --svg "$out/sweep-$i.svg"
    run $pin $B sync-storm --spawn --server-cpus 0 --users 5000 --messages 100 --json "$out/storm-$i.json"
done
$B median "$out"/idle-*.json "$out"/pairs-*.json "$out"/sweep-*.json "$out"/storm-*.json | tee "$out/medians.txt"
