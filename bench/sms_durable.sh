#!/usr/bin/env bash
# The durable SMS path beside the bare SMPP session, in one run, against the node-smpp SMSC of
# tests/smsc on 127.0.0.1 (a fresh one per measurement):
#
#   session  N one-part UCS-2 texts over 2 binds x window 100, nothing stored (clean link);
#   durable  the same N as outbox rows: claimed, sent over 2 binds x window 100, each outcome
#            committed before its window slot frees, each receipt stored before it is
#            acknowledged (SQLite, synchronous = FULL, the audit trail written);
#
# the durable path on a clean link, with the centre closing every link each 2,000 PDUs it
# reads, and with 100 submits throttled (ESME_RTHROTTLED). Three runs each; one JSON line per
# measurement on standard output, then the ratios (durable / session of the same run).
#
#   ./bench/sms_durable.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
# Under bench/loadwatch.py: the run ends with a JSON line saying how busy the rest of the
# machine was (a run marked "contention" is not quoted in bench/README.md).
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
count="${1:-10000}"
[ -d tests/smsc/node_modules/smpp ] || npm ci --prefix tests/smsc --no-audit --no-fund --loglevel=error
cargo build --release --quiet --example sms_throughput
bin=target/release/examples/sms_throughput

log=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$log"' EXIT
measure() { # name, control path or "", mode args…
  local name=$1 quirk=$2
  shift 2
  node tests/smsc/smsc.js --log "$log/$name" --receipt-ms 50 >"$log/$name.banner" &
  pid=$!
  for _ in $(seq 50); do
    [ -s "$log/$name.banner" ] && break
    sleep 0.1
  done
  local smpp control
  smpp=$(awk '{print $2}' "$log/$name.banner")
  control=$(awk '{print $4}' "$log/$name.banner")
  [ -n "$quirk" ] && curl -fsS "http://$control$quirk" >/dev/null
  "$bin" "$@" --smpp "$smpp" --count "$count" --window 100 --binds 2 |
    sed "s/^{/{\"run\": \"$name\", /" | tee -a "$log/results.jsonl"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}
for i in 1 2 3; do
  measure "session-$i" "" raw
  measure "durable-clean-$i" "" outbox
  measure "durable-drops-$i" "/drop-every?count=2000" outbox
  measure "durable-throttle-$i" "/throttle?count=100" outbox
done
python3 - "$log/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for i in "123":
    session = next(r["per_sec"] for r in rows if r["run"] == f"session-{i}")
    for cond in ("clean", "drops", "throttle"):
        d = next(r["parts_per_sec"] for r in rows if r["run"] == f"durable-{cond}-{i}")
        print(f"run {i}: durable {cond:8} {d:7.0f} parts/s = {d / session:5.1%} of the session's {session:.0f}/s")
PY
