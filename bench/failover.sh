#!/usr/bin/env bash
# Failover time of two stormbell nodes on one PostgreSQL: the leader is killed with SIGKILL the
# moment rain over a flash-flood zone appears in the feed it polls, and the clock runs until the
# first text of the warning reaches the node-smpp SMSC — sent by the standby, which must first
# take the lease (it ends unrenewed), start feeds and correlate, poll, decide and send.
#
# Each run: a fresh database with the synthetic county imported, node a leading, node b
# standing by (both bound to the SMSC), the rain feed empty until the kill. Default lease
# (`store.lease_secs` = 10), feed polls not spread after a start (`feeds.start_spread_secs` = 0:
# with the default spread the first poll may wait up to that long more).
#
#   ./bench/failover.sh [RUNS] [LEASE_SECS]
#
# One JSON line per run, then the median and the worst.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
runs="${1:-10}"
lease="${2:-10}"
[ -d tests/smsc/node_modules/smpp ] || npm ci --prefix tests/smsc --no-audit --no-fund --loglevel=error
cargo build --release --quiet
bin=target/release/stormbell
# (stormbell reads STORMBELL_* from its environment as configuration: not loadwatch's mark.)
sb() { env -u STORMBELL_LOADWATCH "$bin" "$@"; }  # (run in the background with env directly: $! must be the node)
# shellcheck source=bench/pg_lib.sh
. bench/pg_lib.sh
start_pg
# The rain feed: a folder served over loopback HTTP.
mkdir -p "$log/www"
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$http" --bind 127.0.0.1 --directory "$log/www" >/dev/null 2>"$log/http.log" &
pids+=($!)
header='STCD,STNM,LGTD,LTTD,TM,DRP,INTV'
rain() { # an hour of rain ending now at the gauge beside zone FF331098001 (synthetic county)
  printf '%s\n70499001,桃垟（合成）,120.945,28.19,%s,50.0,1.00\n' "$header" \
    "$(TZ=Asia/Shanghai date '+%Y-%m-%d %H:%M:00')" >"$log/www/rain.tmp"
  mv "$log/www/rain.tmp" "$log/www/rain.csv"
}
waitfor() { # file, text, seconds
  for _ in $(seq $(($3 * 20))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "timed out waiting for '$2' in $1" >&2
  return 1
}
# shellcheck source=bench/checkin_lib.sh
. bench/checkin_lib.sh
for i in $(seq "$runs"); do
  run="$log/run$i"
  mkdir -p "$run"
  url=$(fresh)
  sb --db "$url" registry import fixtures/county >/dev/null
  echo "$header" >"$log/www/rain.csv"
  start_smsc "$run"
  for n in a b; do
    cat >"$run/$n.toml" <<EOF
[store]
node = "$n"
lease_secs = $lease
path = "$run/$n.db"

[web]
listen = ""

[feeds]
start_spread_secs = 0

[[feeds.source]]
id = "rain"
kind = "rainfall"
url = "http://127.0.0.1:$http/rain.csv"
interval_secs = 600

[[dispatch.sms.accounts]]
name = "main"
address = "$smpp"
system_id = "county"
password = "secret"
source = "12379"
tps = 500
EOF
  done
  polls=$(grep -c "GET /rain.csv" "$log/http.log" || true)
  env -u STORMBELL_LOADWATCH "$bin" --config "$run/a.toml" --db "$url" --log-format json run 2>"$run/a.log" >/dev/null &
  a=$!
  pids+=($a)
  # a has polled the feed (no rain yet), and will not again for ten minutes.
  for _ in $(seq 1200); do
    [ "$(grep -c "GET /rain.csv" "$log/http.log" || true)" -gt "$polls" ] && break
    sleep 0.05
  done
  env -u STORMBELL_LOADWATCH "$bin" --config "$run/b.toml" --db "$url" --log-format json run 2>"$run/b.log" >/dev/null &
  pids+=($!)
  waitfor "$run/b.log" "another node leads" 60
  waitfor "$run/b.log" "bound to SMSC" 60
  # The rain comes and the leader dies in the same instant: only b can warn.
  rain
  t0=$(date +%s.%N)
  kill -9 "$a"
  wait "$a" 2>/dev/null || true
  waitfor "$run/smsc/submits.jsonl" '"status":0' $((lease * 6))
  t1=$(date +%s.%N)
  led=$(python3 - "$run/b.log" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    if "this node leads" in l:
        print(json.loads(l)["timestamp"]); break
PY
)
  python3 - "$t0" "$t1" "$led" "$i" <<'PY' | tee -a "$log/results.jsonl"
import datetime, json, sys
t0, t1, led, i = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
lead = datetime.datetime.fromisoformat(led.replace("Z", "+00:00")).timestamp() - t0
print(json.dumps({"run": i, "leads_after_s": round(lead, 2), "first_text_after_s": round(t1 - t0, 2)}))
PY
  kill "${pids[@]:1}" 2>/dev/null || true
  wait "${pids[@]:1}" 2>/dev/null || true
  pids=("${pids[0]}")
done
python3 - "$log/results.jsonl" "$lease" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = sorted(r["first_text_after_s"] for r in rows)
l = sorted(r["leads_after_s"] for r in rows)
print(f"{len(t)} runs, lease {sys.argv[2]} s: first text by the new leader after the kill"
      f" median {statistics.median(t):.2f} s, worst {t[-1]:.2f} s;"
      f" the standby leading after median {statistics.median(l):.2f} s, worst {l[-1]:.2f} s")
PY
