#!/usr/bin/env bash
# The PostGIS side of the typhoon exposure benchmark.
#
# The same 600,000 villages and the same wind field as `correlate_scale` (exported by it), in a
# throwaway PostgreSQL 15 + PostGIS 3 cluster on 127.0.0.1: villages as geography points with a
# GiST index; per hourly position and tier, the quadrant radii. The query is the one stormbell
# answers: per village, the highest tier whose quadrant radius covers it, and the first time it
# does. ST_DWithin on the largest quadrant radius uses the index; the quadrant comes from
# ST_Azimuth. Sphere distances on both sides (radii scaled to the same angle), so both must
# find the same villages; the script prints the counts per tier to compare.
#
# A second PostGIS formulation answers the looser question an analyst would write first: draw
# each position's wind field as a polygon (four quarter discs, 9 points per quarter, lon/lat
# geometry), union them per tier into swaths (ST_Union, then ST_Subdivide for the index), and
# ST_Intersects the villages with a GiST index. It gives the exposed set and tiers but not
# when, and its polygons approximate the arcs, so its counts differ slightly.
#
# Both sides are measured as a user would run them and on one core: stormbell with both cores
# (its exposure splits the villages over the available cores) and pinned to one (taskset);
# PostGIS with parallel workers on (2 per gather, the plan's cost settings lowered so the
# planner uses them for this small outer table; the EXPLAIN is saved) and with them off.
#
# bench/postgis_typhoon.sh [WORKDIR]      (needs postgresql-15-postgis-3; installs it as root)
set -euo pipefail
cd "$(dirname "$0")/.."
# Under bench/loadwatch.py: the run ends with a JSON line saying how busy the rest of the
# machine was (a run marked "contention" is not quoted in bench/README.md).
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
WORK=${1:-/tmp/stormbell-postgis}
PORT=${PGPORT_BENCH:-55433}
PGBIN=/usr/lib/postgresql/15/bin
RUNS=${RUNS:-3}

if [ ! -f /usr/share/postgresql/15/extension/postgis.control ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q postgresql-15-postgis-3 >/dev/null
  else
    echo "postgis is not installed: apt-get install postgresql-15-postgis-3" >&2
    exit 1
  fi
fi

rm -rf "$WORK"
mkdir -p "$WORK/data"
cargo build -q --release --example correlate_scale
target/release/examples/correlate_scale --export "$WORK/data" | tee "$WORK/stormbell.txt"
taskset -c 0 target/release/examples/correlate_scale | tee "$WORK/stormbell-1core.txt"

# PostgreSQL refuses to run as root: run it as postgres when we are root.
AS=()
if [ "$(id -u)" = 0 ]; then
  AS=(runuser -u postgres --)
  chown -R postgres "$WORK"
fi
"${AS[@]}" "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $WORK -c shared_buffers=1GB -c work_mem=256MB -c max_parallel_workers=2 -c max_parallel_workers_per_gather=2" start >/dev/null
trap '"${AS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null' EXIT
PSQL=("${AS[@]}" psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1)

"${PSQL[@]}" <<SQL
CREATE EXTENSION postgis;
CREATE TABLE village (id int PRIMARY KEY, lon float8, lat float8, geog geography(Point, 4326));
\copy village (id, lon, lat) FROM '$WORK/data/villages.csv' WITH (FORMAT csv)
UPDATE village SET geog = ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography;
CREATE INDEX village_geog ON village USING gist (geog);
ALTER TABLE village ADD COLUMN g geometry(Point, 4326);
UPDATE village SET g = geog::geometry;
CREATE INDEX village_g ON village USING gist (g);
CREATE TABLE wind (probe int, t timestamptz, tier int, lon float8, lat float8,
                   r_ne float8, r_se float8, r_sw float8, r_nw float8,
                   rmax float8, geog geography(Point, 4326));
\copy wind (probe, t, tier, lon, lat, r_ne, r_se, r_sw, r_nw) FROM '$WORK/data/wind.csv' WITH (FORMAT csv)
UPDATE wind SET geog = ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography,
                rmax = greatest(r_ne, r_se, r_sw, r_nw);
VACUUM ANALYZE village;
VACUUM ANALYZE wind;
SQL

QUERY="
WITH hit AS (
  SELECT v.id, w.tier, w.t
  FROM wind w
  JOIN village v ON ST_DWithin(v.geog, w.geog, w.rmax, false)
  WHERE ST_Distance(v.geog, w.geog, false) <=
        CASE least(floor(degrees(ST_Azimuth(w.geog, v.geog)) / 90), 3)::int
          WHEN 0 THEN w.r_ne WHEN 1 THEN w.r_se WHEN 2 THEN w.r_sw ELSE w.r_nw END
), best AS (
  SELECT DISTINCT ON (id) id, tier, t FROM hit ORDER BY id, tier DESC, t
)
SELECT tier, count(*) FROM best GROUP BY tier ORDER BY tier;"

SWATH="
DROP TABLE IF EXISTS swath;
CREATE TEMP TABLE swath AS
WITH pts AS (
  SELECT w.probe, w.tier, q, a,
         ST_Project(w.geog, (ARRAY[w.r_ne, w.r_se, w.r_sw, w.r_nw])[q + 1],
                    radians(q * 90 + a * 11.25))::geometry AS p
  FROM wind w, generate_series(0, 3) q, generate_series(0, 8) a
), ring AS (
  SELECT probe, tier, ST_MakeLine(p ORDER BY q, a) AS line FROM pts GROUP BY probe, tier
), shape AS (
  SELECT tier, ST_MakeValid(ST_MakePolygon(ST_AddPoint(line, ST_StartPoint(line)))) AS g
  FROM ring
)
SELECT tier, ST_Subdivide(ST_Union(g), 256) AS g FROM shape GROUP BY tier;
CREATE INDEX ON swath USING gist (g);
SELECT tier, count(*) FROM (
  SELECT v.id, max(s.tier) AS tier FROM swath s JOIN village v ON ST_Intersects(s.g, v.g)
  GROUP BY v.id
) x GROUP BY tier ORDER BY tier;"

PARALLEL="SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;"
SERIAL="SET max_parallel_workers_per_gather = 0;"
echo "$PARALLEL EXPLAIN $QUERY" | "${PSQL[@]}" -A -t > "$WORK/postgis-plan.txt"
{
  echo "$PARALLEL"
  echo '\timing on'
  for _ in $(seq "$RUNS"); do echo "$QUERY"; done
} | "${PSQL[@]}" -A -F, -t | tee "$WORK/postgis.txt"
{
  echo "$SERIAL"
  echo '\timing on'
  for _ in $(seq "$RUNS"); do echo "$QUERY"; done
} | "${PSQL[@]}" -A -F, -t | tee "$WORK/postgis-1core.txt"

{
  echo '\timing on'
  for _ in $(seq "$RUNS"); do echo "BEGIN; $SWATH COMMIT;"; done
} | "${PSQL[@]}" -A -F, -t | tee "$WORK/swath.txt"

echo
median() { grep Time "$1" | sort -t' ' -k2 -n | awk '{a[NR]=$2} END {print "median " a[int((NR+1)/2)] " ms over " NR " runs"}'; }
echo "stormbell (2 cores): $(grep 'typhoon:' "$WORK/stormbell.txt" | tr '\n' ' ')"
echo "stormbell (1 core):  $(grep 'typhoon:' "$WORK/stormbell-1core.txt" | tr '\n' ' ')"
echo "PostGIS:   per tier (0 blue … 3 red): $(grep -v Time "$WORK/postgis.txt" | head -4 | tr '\n' ' ')"
echo "PostGIS:   parallel plan: $(grep -c 'Gather' "$WORK/postgis-plan.txt") Gather node(s) (plan in $WORK/postgis-plan.txt)"
echo "PostGIS (parallel, 2 workers): $(median "$WORK/postgis.txt")"
echo "PostGIS (1 core, no workers):  $(median "$WORK/postgis-1core.txt")"
# The swath variant: the sum of the statements of one run (create, index, query).
echo "swaths:    per tier: $(grep -v Time "$WORK/swath.txt" | grep , | head -4 | tr '\n' ' ')"
echo "swaths:    $(grep Time "$WORK/swath.txt" | awk '{s += $2; if (NR % 6 == 0) {print s; s = 0}}' | sort -n | awk '{a[NR]=$1} END {print "median " a[int((NR+1)/2)] " ms over " NR " runs (BEGIN … COMMIT)"}')"
