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
$B pairs --spawn --system mqtt --pairs 10 --rate 200 --duration 2 --quiet
$B compare --scenario pairs --pairs 10 --rate 200 --duration 2 --quiet
$B compare --scenario fanout --members 20 --rate 20 --duration 2 --quiet
# The per-thread split script, on the same debug build.
PROFILE=debug PAIRS=10 RATE=200 DURATION=2 bash bench/threads.sh >/dev/null
