#!/usr/bin/env bash
# The office board of a city or province under a storm over every village, on SQLite and on
# PostgreSQL, side by side: the whole board (every row), the summary by county (what an
# office over several counties opens on) and one county's board. The registry is synthetic
# (fixtures/county/generate.py, province code 99, which does not exist).
#
#   ./bench/office_scale.sh [COUNTIES (40)] [RUNS (5)]
set -euo pipefail
cd "$(dirname "$0")/.."
# Under bench/loadwatch.py: the run ends with a JSON line saying how busy the rest of the
# machine was (a run marked "contention" is not quoted in bench/README.md).
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
counties=${1:-40}
runs=${2:-5}
out=bench/out/counties-$counties
[ -f "$out/persons.csv" ] || python3 fixtures/county/generate.py --out "$out" --counties "$counties" >/dev/null
cargo build --release --quiet --example office_board
. bench/pg_lib.sh
start_pg
for engine in sqlite postgres; do
  echo "== $engine, $counties counties"
  db=()
  [ "$engine" = postgres ] && db=(--db "$(fresh)")
  env -u STORMBELL_LOADWATCH target/release/examples/office_board --runs "$runs" --registry "$out" "${db[@]}" \
    --scopes summary,county,all --viewers 8
done
