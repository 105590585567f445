#!/usr/bin/env bash
# The Lekima drill on two stormbell nodes sharing one PostgreSQL (durable: fsync and
# synchronous_commit on), its leader killed with SIGKILL mid-typhoon — the drill the tests run
# on the smaller convective-cell scenario (`drill::two_nodes_replay_one_drill…`), at the size
# of a real typhoon (tens of thousands of texts), too long for the test suite on PostgreSQL.
#
# Node a replays `fixtures/scenarios/lekima-2019` and leads; node b stands by. When the drill
# reaches KILL_AT (default the evening before landfall, red warnings going out), a is killed; b
# takes the lease, resumes and finishes. Beside it, the same drill runs whole on SQLite. Then:
# the seconds from the kill to b leading (its `drill.leading` audit entry), the warnings of the
# two (must be the same), texts sent twice against what was in flight at the kill, and
# `audit verify`.
#
#   ./bench/drill_failover.sh [SPEED] [LEASE_SECS] [KILL_AT]
#
# SPEED: `max` (default) or simulated seconds per real second.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
speed="${1:-max}"
lease="${2:-10}"
kill_at="${3:-2019-08-09T20:00:00+08:00}"
cargo build --release --quiet
bin=target/release/stormbell
# shellcheck source=bench/pg_lib.sh
. bench/pg_lib.sh
start_pg
url=$(fresh)
db=${url##*/}
q() { psql -qAt -h 127.0.0.1 -p "$port" -U postgres -d "$db" -c "$1" 2>/dev/null || true; }
node() { # name: a replay under the lease, in the background
  env -u STORMBELL_LOADWATCH STORMBELL_STORE__NODE="$1" STORMBELL_STORE__LEASE_SECS="$lease" \
    "$bin" --db "$url" replay --scenario fixtures/scenarios/lekima-2019 --speed "$speed" \
    --out "$log/$1" >"$log/$1.out" 2>&1 &
}
started=$(date +%s.%N)
env -u STORMBELL_LOADWATCH "$bin" replay --scenario fixtures/scenarios/lekima-2019 \
  --out "$log/whole" >"$log/whole.out" 2>&1 &
whole=$!
pids+=("$whole")
node a
a=$!
pids+=("$a")
until [ "$(q "SELECT holder FROM stormbell_lease WHERE name = 'leader'")" = a ]; do sleep 0.2; done
node b
b=$!
pids+=("$b")
until [[ "$(q 'SELECT reached FROM drill_run')" > "$(TZ=UTC date -d "$kill_at" '+%Y-%m-%dT%H:%M:%S')" ]]; do
  kill -0 "$a" 2>/dev/null || { echo "node a ended before the kill" >&2; cat "$log/a.out" >&2; exit 1; }
  sleep 0.5
done
kill -9 "$a"
killed=$(date +%s.%N)
in_flight=$(q "SELECT count(*) FROM dispatch_message WHERE state IN ('submitting', 'reconciling')")
reached=$(q 'SELECT reached FROM drill_run')
wait "$b" || { echo "node b failed" >&2; cat "$log/b.out" >&2; exit 1; }
finished=$(date +%s.%N)
wait "$whole"
led=$(q "SELECT extract(epoch FROM CAST(at AS timestamptz)) FROM audit
         WHERE kind = 'drill.leading' AND CAST(detail AS json) ->> 'node' = 'b'")
twice=$(q 'SELECT coalesce(sum(uncertain), 0) FROM dispatch_message')
verify=ok
env -u STORMBELL_LOADWATCH "$bin" audit verify --db "$url" >"$log/verify.out" 2>&1 || verify=FAILED
same=$(python3 - "$log/whole/summary.json" "$log/b/summary.json" <<'EOF'
import json, sys
a, b = (json.load(open(p))["warnings"] for p in sys.argv[1:])
print("same" if a == b else f"DIFFER: whole {a} / two nodes {b}")
EOF
)
python3 - <<EOF
import json
print(json.dumps({
  "speed": "$speed", "lease_secs": $lease, "killed_at_drill_time": "$reached",
  "kill_to_b_leading_s": round($led - $killed, 2),
  "drill_wall_s": round($finished - $started, 1),
  "in_flight_at_kill": $in_flight, "sent_twice": $twice,
  "warnings_vs_whole_run": "$same", "audit_verify": "$verify",
}, ensure_ascii=False))
EOF
tail -3 "$log/b.out"
