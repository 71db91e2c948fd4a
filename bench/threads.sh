#!/usr/bin/env bash
# Splits the server's CPU time and bytes written by thread during one `pairs` run: the async
# runtime's workers, the SQLite writer, the indexer and the checkpointer. Pins the server to CPU 0
# and the load tool to CPU 1. Extra arguments go to `tern serve` (for example `--config FILE`), and
# TERN_* settings reach it through the environment (for example TERN_COMMIT_WINDOW_US=2000).
#
#   bash bench/threads.sh                       # 1,000 pairs, 10,000 msg/s, 15 s
#   RATE=5000 DURATION=20 bash bench/threads.sh
#   PROFILE=debug PAIRS=10 RATE=200 DURATION=2 bash bench/threads.sh   # the CI smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
if [ "$profile" = release ]; then
    cargo build --release -p tern -p tern-bench
else
    cargo build -p tern -p tern-bench
fi
T="${CARGO_TARGET_DIR:-target}/$profile"
dir=$(mktemp -d)
log=$(mktemp)
pid=
trap '[ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; rm -rf "$dir" "$log"' EXIT
# Cheap password hashing and no limits per address, as `tern-bench --spawn` uses, so that
# registering the users is quick and loopback clients are not refused as a flood.
export TERN_REGISTRATIONS_PER_ADDRESS=0 TERN_MAX_CONNECTIONS_PER_ADDRESS=0 \
    TERN_MAX_CONNECTIONS_PER_USER=0 TERN_MAX_ANONYMOUS_CONNECTIONS=1000000
TERN_ARGON2_MEMORY_KIB=64 TERN_ARGON2_ITERATIONS=1 TERN_LOG=warn taskset -c 0 "$T/tern" serve \
    --tcp-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --data-dir "$dir" "$@" >"$log" 2>&1 &
pid=$!
addr=
for _ in $(seq 1 300); do
    addr=$(sed -n 's/^tern: tcp listening on //p' "$log")
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { cat "$log"; exit 1; }
# thread name, CPU ticks (user + system), bytes written (wchar), summed over threads of a name.
snapshot() {
    for t in /proc/"$pid"/task/*; do
        printf '%s %s %s\n' "$(tr ' ' _ <"$t/comm")" \
            "$(awk '{print $14 + $15}' "$t/stat")" "$(awk '/^wchar/ {print $2}' "$t/io")"
    done | awk '{c[$1] += $2; w[$1] += $3} END {for (k in c) print k, c[k], w[k]}' | sort
}
before=$(snapshot)
# The table goes through a file, not `tee /dev/stderr`: reopening a stderr that is redirected to
# a file truncates that file (a CI log lost everything before this script's output).
status=0
taskset -c 1 "$T/tern-bench" pairs --server "$addr" --server-pid "$pid" --pairs "${PAIRS:-1000}" \
    --rate "${RATE:-10000}" --duration "${DURATION:-15}" >"$dir/pairs.out" || status=$?
after=$(snapshot)
cat "$dir/pairs.out"
[ "$status" -eq 0 ] || exit "$status"
delivered=$(awk '/messages delivered/ {print $3}' "$dir/pairs.out")
hz=$(getconf CLK_TCK)
echo
echo "server threads over the run (${delivered} messages delivered)"
join <(echo "$before") <(echo "$after") | awk -v n="$delivered" -v hz="$hz" '
    { cpu = ($4 - $2) / hz; w = $5 - $3
      printf "  %-18s %7.2f s CPU  %6.1f us/msg  %8.1f MB written  %7.0f B/msg\n", $1, cpu, cpu * 1e6 / n, w / 1e6, w / n }'
