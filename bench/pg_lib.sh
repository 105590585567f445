# Shared by the benchmarks that need a PostgreSQL of their own (source it): a server on a
# loopback port in a temporary folder, with its durable defaults (fsync, synchronous_commit),
# stopped with everything the script started when it exits.
#
#   start_pg            sets $log (the folder), $port, and a trap that stops it all; $pids
#                       (processes to kill at the end) starts empty.
#   fresh               prints the URL of a new empty database.
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_pg() {
  log=$(mktemp -d)
  pids=()
  trap stop_pg EXIT
  [ "$(id -u)" -eq 0 ] && chown postgres "$log"
  as_pg "$pgbin/initdb" -A trust -U postgres -E UTF8 --locale=C -D "$log/pg" >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  as_pg "$pgbin/pg_ctl" -D "$log/pg" -l "$log/pg.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $log" start >/dev/null
}

# CPU seconds the server has used: the postmaster, the children it reaped, and those still
# running (it detaches from the script, so bench/loadwatch.py cannot see it by itself).
pg_cpu() {
  local pm
  pm=$(head -1 "$log/pg/postmaster.pid" 2>/dev/null) || return 0
  python3 - "$pm" <<'PY'
import os, sys
pm = sys.argv[1]
def stat(pid):  # fields from the state on: [1] ppid, [11..14] utime stime cutime cstime
    s = open(f"/proc/{pid}/stat").read()
    return s[s.rindex(")") + 2:].split()
ticks = sum(int(x) for x in stat(pm)[11:15])
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        f = stat(pid)
    except OSError:
        continue
    if f[1] == pm:
        ticks += int(f[11]) + int(f[12])
print(ticks / os.sysconf("SC_CLK_TCK"))
PY
}

stop_pg() {
  [ ${#pids[@]} -gt 0 ] && { kill -9 "${pids[@]}" 2>/dev/null || true; }
  if [ -n "${STORMBELL_LOADWATCH_EXTRA:-}" ]; then pg_cpu >>"$STORMBELL_LOADWATCH_EXTRA" || true; fi
  as_pg "$pgbin/pg_ctl" -D "$log/pg" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$log"
}

fresh() { # a new empty database; its URL (called in $(…): no counter survives it)
  local name="b$(date +%s%N)"
  psql -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE $name" >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/$name"
}
