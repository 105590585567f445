#!/usr/bin/env bash
# The durable SMS path at a carrier's contract, the ceiling every office actually has: the
# node-smpp SMSC of tests/smsc holds the account to BINDS binds and TPS submits per calendar
# second (one more bind gets ESME_RBINDFAIL, one more submit ESME_RTHROTTLED), and each
# configuration shares that contract out as docs/deploy.md says:
#
#   sqlite     one node on the embedded default: all the binds, tps = TPS;
#   postgres   one node on a PostgreSQL 15 this script starts on 127.0.0.1 (durable defaults):
#              all the binds, tps = TPS;
#   postgres-2 two nodes sharing the outbox and the account: half the binds and tps = TPS/2
#              each.
#
# COUNT = 8 seconds' worth of texts at the contract, alternating the three, for each TPS. One
# JSON line per measurement (with what the SMSC counted: binds refused, submits throttled, the
# busiest second), then each configuration's rate as a share of the contract and the ratio
# two nodes / SQLite. bench/store_engines.sh is the same path with no contract (what the
# machine can carry).
#
#   ./bench/sms_contract.sh [ROUNDS] [TPS…]      (defaults: 2 rounds; 500 1000 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
rounds="${1:-2}"
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(500 1000 2000)
binds=4
[ -d tests/smsc/node_modules/smpp ] || npm ci --prefix tests/smsc --no-audit --no-fund --loglevel=error
cargo build --release --quiet --example sms_throughput
bin=target/release/examples/sms_throughput
# shellcheck source=bench/pg_lib.sh
. bench/pg_lib.sh
start_pg
# shellcheck source=bench/checkin_lib.sh
. bench/checkin_lib.sh
measure() { # name, contract tps, binds per node, tps per node, extra args…
  local name=$1 tps=$2 per_binds=$3 per_tps=$4
  shift 4
  mkdir -p "$log/$name"
  start_smsc "$log/$name"
  local control
  control=$(awk '{print $4}' "$log/$name/smsc.banner")
  curl -fsS "http://$control/contract?account=county&binds=$binds&tps=$tps" >/dev/null
  "$bin" outbox --smpp "$smpp" --count $((tps * 8)) --window 100 --binds "$per_binds" \
    --tps "$per_tps" "$@" >"$log/$name/out.json"
  # What the centre counted, beside what the nodes measured.
  curl -fsS "http://$control/status" | python3 -c '
import json, sys
c = json.load(sys.stdin)["contracts"]["county"]
line = json.loads(open(sys.argv[1]).read())
line = {"run": sys.argv[2], "contract_tps": int(sys.argv[3]), **line,
        "binds_refused": c["bindsRefused"], "throttled": c["throttled"], "busiest_second": c["busiest"]}
print(json.dumps(line))' "$log/$name/out.json" "$name" "$tps" | tee -a "$log/results.jsonl"
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}
for i in $(seq "$rounds"); do
  for tps in "${rates[@]}"; do
    measure "sqlite-$tps-$i" "$tps" "$binds" "$tps"
    measure "postgres-$tps-$i" "$tps" "$binds" "$tps" --db "$(fresh)"
    measure "postgres-2-$tps-$i" "$tps" $((binds / 2)) $((tps / 2)) --db "$(fresh)" --nodes 2
  done
done
python3 - "$log/results.jsonl" "$rounds" "${rates[@]}" <<'PY'
import json, sys
rows = {json.loads(l)["run"]: json.loads(l) for l in open(sys.argv[1])}
rounds, rates = int(sys.argv[2]), sys.argv[3:]
for tps in rates:
    for i in range(1, rounds + 1):
        s, p, p2 = (rows[f"{n}-{tps}-{i}"] for n in ("sqlite", "postgres", "postgres-2"))
        share = lambda r: r["parts_per_sec"] / int(tps) * 100
        print(f"contract {tps}/s, round {i}: SQLite one node {s['parts_per_sec']:6.0f} parts/s ({share(s):3.0f} %);"
              f" PostgreSQL one node {p['parts_per_sec']:6.0f} ({share(p):3.0f} %);"
              f" two nodes {p2['parts_per_sec']:6.0f} ({share(p2):3.0f} %) = {p2['parts_per_sec'] / s['parts_per_sec']:4.2f}x SQLite;"
              f" throttled {s['throttled']}/{p['throttled']}/{p2['throttled']}, binds refused"
              f" {s['binds_refused']}/{p['binds_refused']}/{p2['binds_refused']}, sent again {p2['sent_again']}")
PY
