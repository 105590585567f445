#!/usr/bin/env bash
# A province-sized registry: ~100,000 villages, 20,000 zones, 600,000 persons in 400 synthetic
# counties (province code 99, which does not exist). Times `registry check` and a first and a
# repeated `registry import`, with peak memory.
#
#   ./bench/registry_province.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Under bench/loadwatch.py: the run ends with a JSON line saying how busy the rest of the
# machine was (a run marked "contention" is not quoted in bench/README.md).
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
out=bench/out/province
db=bench/out/province.db
[ -f "$out/persons.csv" ] || python3 fixtures/county/generate.py --out "$out" --counties 400
cargo build --release --quiet
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package: time)" >&2; exit 2; }
measure() {
  local label=$1; shift
  /usr/bin/time -f "$label: %e s wall, %M KB peak RSS" "$@" >/dev/null 2>/tmp/registry_bench.err || true
  tail -1 /tmp/registry_bench.err
}
rm -f "$db" "$db-wal" "$db-shm"
measure "registry check        " target/release/stormbell registry check "$out"
measure "registry import (new) " target/release/stormbell --db "$db" registry import "$out"
measure "registry import (same)" target/release/stormbell --db "$db" registry import "$out"
ls -l "$db" | awk '{printf "database: %.0f MB\n", $5 / 1e6}'
