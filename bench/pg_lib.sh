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

stop_pg() {
  [ ${#pids[@]} -gt 0 ] && { kill -9 "${pids[@]}" 2>/dev/null || true; }
  as_pg "$pgbin/pg_ctl" -D "$log/pg" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$log"
}

fresh() { # a new empty database; its URL (called in $(…): no counter survives it)
  local name="b$(date +%s%N)"
  psql -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE $name" >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/$name"
}
