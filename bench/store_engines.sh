#!/usr/bin/env bash
# The durable SMS path (outbox rows claimed, sent over 2 binds x window 100 to the node-smpp
# SMSC of tests/smsc, each outcome committed before its window slot frees, each receipt stored
# before it is acknowledged) on the two engines, alternating, in one run:
#
#   sqlite    the embedded default (WAL, synchronous = FULL);
#   postgres  a PostgreSQL 15 this script starts on 127.0.0.1 with its durable defaults
#             (fsync on, synchronous_commit on), a fresh database per measurement: one node,
#             then two nodes sharing the outbox (each its own store connections and binds,
#             claiming with FOR UPDATE SKIP LOCKED), with one bind each (the account's two
#             binds split) and with two each;
#
# then 100,000 recipients enqueued in one transaction on each. One JSON line per measurement,
# then the ratios (postgres / sqlite of the same round), and what the whole machine spent per
# 1,000 parts on each (every process: SMSC, database server, stormbell), with the rate its
# cores could carry at that cost.
#
#   ./bench/store_engines.sh [COUNT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
count="${1:-10000}"
rounds="${2:-3}"
[ -d tests/smsc/node_modules/smpp ] || npm ci --prefix tests/smsc --no-audit --no-fund --loglevel=error
cargo build --release --quiet --example sms_throughput
bin=target/release/examples/sms_throughput
# shellcheck source=bench/pg_lib.sh
. bench/pg_lib.sh
start_pg
# shellcheck source=bench/checkin_lib.sh
. bench/checkin_lib.sh
measure() { # name, binds per node, extra args…
  local name=$1 binds=$2
  shift 2
  mkdir -p "$log/$name"
  start_smsc "$log/$name"
  "$bin" outbox --smpp "$smpp" --count "$count" --window 100 --binds "$binds" "$@" |
    sed "s/^{/{\"run\": \"$name\", /" | tee -a "$log/results.jsonl"
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}
for i in $(seq "$rounds"); do
  measure "sqlite-$i" 2
  measure "postgres-$i" 2 --db "$(fresh)"
  # Two nodes sharing the outbox: the account's two binds split between them, then two each.
  measure "postgres-2x1-$i" 1 --db "$(fresh)" --nodes 2
  measure "postgres-2x2-$i" 2 --db "$(fresh)" --nodes 2
  "$bin" enqueue --count 100000 | sed "s/^{/{\"run\": \"enqueue-sqlite-$i\", /" | tee -a "$log/results.jsonl"
  "$bin" enqueue --count 100000 --db "$(fresh)" |
    sed "s/^{/{\"run\": \"enqueue-postgres-$i\", /" | tee -a "$log/results.jsonl"
done
python3 - "$log/results.jsonl" "$rounds" <<'PY'
import json, sys
rows = {json.loads(l)["run"]: json.loads(l) for l in open(sys.argv[1])}
for i in range(1, int(sys.argv[2]) + 1):
    s, p = rows[f"sqlite-{i}"]["parts_per_sec"], rows[f"postgres-{i}"]["parts_per_sec"]
    p21, p22 = rows[f"postgres-2x1-{i}"]["parts_per_sec"], rows[f"postgres-2x2-{i}"]["parts_per_sec"]
    again = sum(rows[f"{r}-{i}"]["sent_again"] for r in ("postgres-2x1", "postgres-2x2"))
    es, ep = rows[f"enqueue-sqlite-{i}"]["seconds"], rows[f"enqueue-postgres-{i}"]["seconds"]
    print(f"round {i}: durable path on PostgreSQL, one node {p:6.0f} parts/s = {p / s:4.2f}x SQLite's {s:6.0f};"
          f" two nodes (1 bind each) {p21:6.0f} = {p21 / s:4.2f}x; two nodes (2 binds each) {p22:6.0f} = {p22 / s:4.2f}x;"
          f" texts sent again across two nodes: {again};"
          f" enqueue 100k {ep:5.2f} s vs {es:5.2f} s = {ep / es:4.2f}x")
# What the whole machine spent per 1,000 parts (SMSC, database server, stormbell): the rate
# this machine's cores could carry at that cost if nothing else stood in the way.
import os
for name in ("sqlite", "postgres", "postgres-2x1", "postgres-2x2"):
    runs = [rows[f"{name}-{i}"] for i in range(1, int(sys.argv[2]) + 1)]
    per = [r["machine_core_s"] / r["parts"] * 1000 for r in runs if r.get("machine_core_s", -1) > 0]
    if per:
        print(f"{name}: {min(per):.3f}-{max(per):.3f} core-seconds per 1,000 parts;"
              f" at that cost {os.cpu_count()} cores carry at most {os.cpu_count() / max(per) * 1000:6.0f}"
              f"-{os.cpu_count() / min(per) * 1000:6.0f} parts/s")
PY
