#!/usr/bin/env bash
# The check-in answers under open-loop load (bench/checkin_load.rs: answers sent at a fixed
# rate, latency from each answer's due time) at 1,000, 2,000 and 4,000 answers/s, each against
# a fresh server (bench/checkin_server.rs) whose red warning is being dispatched meanwhile to
# a node-smpp SMSC on 127.0.0.1. Everything shares this machine's cores.
#
#   ./bench/checkin_open.sh [SECONDS] [RUNS] [RATES...]
set -euo pipefail
cd "$(dirname "$0")/.."
# Under bench/loadwatch.py: the run ends with a JSON line saying how busy the rest of the
# machine was (a run marked "contention" is not quoted in bench/README.md).
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
secs="${1:-10}"
runs="${2:-3}"
shift 2 2>/dev/null || shift $#
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(1000 2000 4000)
[ -d tests/smsc/node_modules/smpp ] || npm ci --prefix tests/smsc --no-audit --no-fund --loglevel=error
cargo build --release --quiet --example checkin_server --example checkin_load
source bench/checkin_lib.sh
log=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$log"' EXIT

for run in $(seq "$runs"); do
  for rate in "${rates[@]}"; do
    persons=$((rate * secs + 1000))
    start_smsc "$log"
    start_server "$persons" "$log"
    # The first 1,000 links are left for the warm-up (connections, caches): 2 s at 500/s.
    target/release/examples/checkin_load --url "$url" --requests "$log/reqs.txt" --rate 500 --seconds 2 >/dev/null
    printf 'run %s rate %s: ' "$run" "$rate"
    target/release/examples/checkin_load --url "$url" --requests "$log/reqs.txt" --rate "$rate" \
      --seconds "$secs" --skip 1000
    stop_run "$log"
    echo "  answers recorded by the server: $recorded (of $((rate * secs + 1000)) sent); texts on phones meanwhile: $delivered"
  done
done
