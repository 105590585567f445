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
log=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$log"' EXIT

for run in 1 2 3; do
  node tests/smsc/smsc.js --log "$log/smsc$run" --receipt-ms 50 >"$log/smsc$run.banner" &
  pids+=($!)
  for _ in $(seq 50); do [ -s "$log/smsc$run.banner" ] && break; sleep 0.1; done
  smpp=$(awk '{print $2}' "$log/smsc$run.banner")
  target/release/examples/checkin_server --persons "$persons" --out "$log/reqs$run.txt" --smpp "$smpp" \
    >"$log/server$run.out" 2>"$log/server$run.err" &
  server=$!
  pids+=($server)
  for _ in $(seq 600); do grep -q listening "$log/server$run.out" 2>/dev/null && break; sleep 0.1; done
  url=$(awk '{print $2}' "$log/server$run.out")
  echo "run $run: $persons links, dispatch running"
  wrk -t2 -c32 -d"${secs}s" --latency -s bench/checkin.lua "$url" -- "$log/reqs$run.txt" 2 |
    grep -E "Requests/sec|Latency Distribution|50%|90%|99%|requests in|Non-2xx|Socket errors"
  kill -INT "$server"
  wait "$server" 2>/dev/null || true
  grep "answers recorded" "$log/server$run.err" || true
  sent=$(grep -c . "$log/smsc$run/phones.jsonl" 2>/dev/null || echo 0)
  echo "SMS delivered meanwhile: $sent"
  kill "${pids[0]}" 2>/dev/null || true
  pids=()
done
