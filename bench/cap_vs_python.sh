#!/usr/bin/env bash
# Parse-and-validate throughput of stormbell's CAP codec against the Python library capparselib,
# on the same real corpus (tests/data/cap/valid), one core each: capparselib as shipped, and
# with its schema compiled once (its best honest configuration; the fair ratio).
#
#   ./bench/cap_vs_python.sh [SECONDS]
#
# capparselib 0.6.6 pins lxml==4.6.3, which has no wheel for this Python and does not build
# here; the venv gets a current lxml wheel and capparselib is installed --no-deps beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
# Under bench/loadwatch.py: the run ends with a JSON line saying how busy the rest of the
# machine was (a run marked "contention" is not quoted in bench/README.md).
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
secs="${1:-3}"
venv=bench/.venv
corpus=tests/data/cap/valid

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check lxml python-dateutil
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps capparselib==0.6.6
fi

mapfile -t all < <(find "$corpus" -type f | sort)
# Compare on the files both can read: capparselib does not read CAP 1.0, and fails on CAP 1.1
# resources without mimeType and on IPAWS resources without <uri>.
mapfile -t common < <("$venv/bin/python" bench/cap_capparselib.py --accepted "${all[@]}" 2>/dev/null)
echo "corpus: ${#all[@]} files; capparselib reads ${#common[@]} of them; comparing on those"

cargo build --release --quiet --example cap_throughput
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)

ours=$("${pin[@]}" target/release/examples/cap_throughput --seconds "$secs" "${common[@]}")
theirs=$("${pin[@]}" "$venv/bin/python" bench/cap_capparselib.py --seconds "$secs" "${common[@]}")
# The peer's best honest configuration: the same library, the schema compiled once.
cached=$("${pin[@]}" "$venv/bin/python" bench/cap_capparselib.py --seconds "$secs" --cached-schema "${common[@]}")
full=$("${pin[@]}" target/release/examples/cap_throughput --seconds "$secs" "${all[@]}")

rate() { sed -E 's/.*"alerts_per_sec": ([0-9.]+).*/\1/' <<<"$1"; }
echo "stormbell   (common files): $ours"
echo "capparselib (common files): $theirs"
echo "capparselib, schema once:   $cached"
echo "stormbell   (all ${#all[@]} files):  $full"
awk -v a="$(rate "$ours")" -v b="$(rate "$theirs")" -v c="$(rate "$cached")" \
  'BEGIN { printf "ratio stormbell / capparselib as shipped: %.1fx; / schema compiled once: %.1fx\n", a / b, a / c }'
