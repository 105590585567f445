#!/usr/bin/env bash
# SMS dispatch benchmarks against the node-smpp SMSC of tests/smsc, on 127.0.0.1:
# stormbell's SMPP session at window 1, 10 and 100 beside the Python client smpplib sending
# the same 10,000 UCS-2 messages to the same SMSC; the SMSC's ceiling as a neutral client sees
# it (node-smpp's own client, bench/smsc_ceiling.js, in its best configuration, the median of
# as many runs as stormbell's); the whole outbox path; rate accuracy at 100 TPS; enqueueing
# 100,000.
#
#   ./bench/sms_vs_smpplib.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
# Under bench/loadwatch.py: the run ends with a JSON line saying how busy the rest of the
# machine was (a run marked "contention" is not quoted in bench/README.md).
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
count="${1:-10000}"
venv=bench/.venv

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c 'import smpplib' 2>/dev/null ||
  "$venv/bin/pip" install -q --disable-pip-version-check smpplib==2.2.4
[ -d tests/smsc/node_modules/smpp ] || npm ci --prefix tests/smsc --no-audit --no-fund --loglevel=error
cargo build --release --quiet --example sms_throughput
bin=target/release/examples/sms_throughput

log=$(mktemp -d)
# A fresh SMSC per measurement: node-smpp keeps per-message state for receipts and handsets.
smsc_start() {
  node tests/smsc/smsc.js --log "$log/$1" --receipt-ms 50 >"$log/$1.banner" &
  pid=$!
  for _ in $(seq 50); do
    [ -s "$log/$1.banner" ] && break
    sleep 0.1
  done
  smpp=$(awk '{print $2}' "$log/$1.banner")
}
smsc_stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
trap 'kill $pid 2>/dev/null || true; rm -rf "$log"' EXIT

run() { # name, command…
  local name=$1
  shift
  smsc_start "$name"
  "$@" "${smpp%:*}" "${smpp#*:}"
  smsc_stop
}
ours() { "$bin" raw --smpp "$1:$2" --count "$count" "${extra[@]}"; }
theirs() { "$venv/bin/python" bench/smpplib_peer.py "$1" "$2" "$count" "$depth"; }
neutral() { node bench/smsc_ceiling.js "$1" "$2" "$count" "$window" 1; }

# Three runs each (a run is well under a second); the README takes the median.
for i in 1 2 3; do
  for w in 1 10 100; do
    extra=(--window "$w"); run "raw$w-$i" ours
  done
  extra=(--window 100 --binds 2); run "raw2x100-$i" ours
  for depth in 1 100; do
    run "smpplib$depth-$i" theirs
  done
  for window in 100 1000; do
    run "node$window-$i" neutral
  done
done
outbox() { "$bin" outbox --smpp "$1:$2" --count "$count" --window 100 --binds 2; }
run outbox outbox
rate() { "$bin" rate --smpp "$1:$2" --tps 100 --seconds 20; }
run rate rate
"$bin" enqueue --count 100000
