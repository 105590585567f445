# Shared by bench/checkin_wrk.sh and bench/checkin_open.sh (sourced, from the project's root):
# one measurement's SMSC and check-in server, started and stopped the same way for both.

# Start the node-smpp SMSC logging to DIR/smsc (receipts after 50 ms); sets $smpp (its address)
# and adds its pid to $pids.
start_smsc() {
  local dir="$1"
  node tests/smsc/smsc.js --log "$dir/smsc" --receipt-ms 50 >"$dir/smsc.banner" &
  pids+=($!)
  # Up when it has printed its address (a bounded wait for its banner file).
  for _ in $(seq 50); do [ -s "$dir/smsc.banner" ] && break; sleep 0.1; done
  smpp=$(awk '{print $2}' "$dir/smsc.banner")
}

# Start bench/checkin_server with PERSONS responsible persons, its red warning dispatched to
# $smpp, the answers it will be sent written to DIR/reqs.txt; sets $server (pid) and $url.
start_server() {
  local persons="$1" dir="$2"
  target/release/examples/checkin_server --persons "$persons" --out "$dir/reqs.txt" --smpp "$smpp" \
    >"$dir/server.out" 2>"$dir/server.err" &
  server=$!
  pids+=($server)
  # Up when it says where it listens (building the county takes a while for many persons).
  for _ in $(seq 900); do grep -q listening "$dir/server.out" 2>/dev/null && break; sleep 0.1; done
  url=$(awk '{print $2}' "$dir/server.out")
}

# Stop the server (it prints how many answers it recorded) and the SMSC; prints both counts:
# answers recorded, and texts that reached the phones meanwhile.
stop_run() {
  local dir="$1"
  kill -INT "$server"
  wait "$server" 2>/dev/null || true
  recorded=$(sed -n 's/answers recorded: //p' "$dir/server.err")
  delivered=$(grep -c . "$dir/smsc/phones.jsonl" 2>/dev/null || echo 0)
  kill "${pids[0]}" 2>/dev/null || true
  wait 2>/dev/null || true
  pids=()
  rm -rf "$dir/smsc"
}
