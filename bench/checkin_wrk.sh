#!/usr/bin/env bash
# The check-in endpoint under load, measured by wrk (Debian `wrk`, an independent
# C load generator) on 127.0.0.1: every request acknowledges a different person's check-in
# link (a store write each: the answer, its audit entry, the call closed), while the SMS
# channel sends the same persons' texts to the node-smpp SMSC ("while dispatch is running").
#
#   ./bench/checkin_wrk.sh [PERSONS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
# Under bench/loadwatch.py: the run ends with a JSON line saying how busy the rest of the
# machine was (a run marked "contention" is not quoted in bench/README.md).
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
persons="${1:-60000}"
secs="${2:-10}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
[ -d tests/smsc/node_modules/smpp ] || npm ci --prefix tests/smsc --no-audit --no-fund --loglevel=error
cargo build --release --quiet --example checkin_server
source bench/checkin_lib.sh
log=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$log"' EXIT

for run in 1 2 3; do
  mkdir -p "$log/run$run"
  start_smsc "$log/run$run"
  start_server "$persons" "$log/run$run"
  echo "run $run: $persons links, dispatch running"
  wrk -t2 -c32 -d"${secs}s" --latency -s bench/checkin.lua "$url" -- "$log/run$run/reqs.txt" 2 |
    grep -E "Requests/sec|Latency Distribution|50%|90%|99%|requests in|Non-2xx|Socket errors"
  stop_run "$log/run$run"
  echo "answers recorded: $recorded"
  echo "SMS delivered meanwhile: $delivered"
done
