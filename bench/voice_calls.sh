#!/usr/bin/env bash
# 100 simultaneous calls through kamailio (Debian `kamailio`, asking digest credentials on
# every INVITE) to baresip phones (Debian `baresip-core`: four phone banks of 25 registered
# numbers each, auto-answering) on 127.0.0.1, placed once by stormbell's user agent
# (bench/voice_calls.rs) and once by baresip itself (bench/voice_peer.py: the same calls
# `dial`led over its ctrl_tcp, its microphone a tone of the same length), alternating, ROUNDS
# times. Each call plays SECS seconds of audio (RTP paced at 20 ms) and hangs up. One JSON line
# per run, then the CPU-per-call ratios (stormbell / baresip of the same round).
#
#   ./bench/voice_calls.sh [CALLS] [SECS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${STORMBELL_LOADWATCH:-}" ] || exec env STORMBELL_LOADWATCH=1 python3 bench/loadwatch.py -- "$0" "$@"
calls="${1:-100}"
secs="${2:-20}"
rounds="${3:-3}"
command -v kamailio >/dev/null || { echo "install kamailio (Debian)" >&2; exit 1; }
command -v baresip >/dev/null || { echo "install baresip-core (Debian)" >&2; exit 1; }
cargo build --release --quiet --example voice_calls
bin=target/release/examples/voice_calls
work=$(mktemp -d)
pids=()
cleanup() {
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
password=bench-trunk
kport=$(free_port)
cat > "$work/kamailio.cfg" <<CFG
#!KAMAILIO
debug=1
log_stderror=yes
children=2
auto_aliases=no
alias="127.0.0.1:$kport"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "auth.so"
loadmodule "kex.so"
modparam("usrloc", "db_mode", 0)
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (is_method("REGISTER")) { if (!save("location")) { sl_reply_error(); } exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here"); exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    if (is_method("INVITE")) {
        if (!pv_proxy_authenticate("\$fd", "$password", "0")) { proxy_challenge("\$fd", "0"); exit; }
        consume_credentials();
        record_route();
    }
    if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }
    t_relay();
}
CFG
kamailio -f "$work/kamailio.cfg" -DD -E -m 64 -M 8 -l "udp:127.0.0.1:$kport" -Y "$work" 2> "$work/kamailio.log" &
pids+=($!)
first=13800100000
# A tone of SECS seconds (the caller's microphone for baresip) and a long quiet one (the phones').
python3 - "$work" "$secs" <<'PY'
import math, struct, sys, wave
work, secs = sys.argv[1], int(sys.argv[2])
def write(name, n, f):
    with wave.open(f"{work}/{name}", "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", f(i)) for i in range(n)))
write("tone.wav", secs * 8000, lambda i: int(math.sin(i * 2 * math.pi * 440 / 8000) * 8000))
write("quiet.wav", (secs + 60) * 8000, lambda i: 0)
PY
# A baresip configuration: folder, SIP port, control port, microphone file, RTP ports, calls.
baresip_config() {
  cat > "$1/config" <<CFG
poll_method epoll
sip_listen 127.0.0.1:$2
audio_player aufile,/dev/null
audio_source aufile,$4
audio_alert aufile,/dev/null
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:$3
rtp_ports $5
call_max_calls $6
CFG
}
banks=4
per=$(( (calls + banks - 1) / banks ))
for b in $(seq 0 $((banks - 1))); do
  d="$work/bank$b"; mkdir -p "$d"
  sp=$(free_port); cp=$(free_port); rp=$(( 20000 + b * 500 ))
  baresip_config "$d" "$sp" "$cp" "$work/quiet.wav" "$rp-$((rp + 499))" $((per * 2))
  : > "$d/accounts"
  for i in $(seq 0 $((per - 1))); do
    n=$(( first + b * per + i ))
    [ $(( b * per + i )) -lt "$calls" ] || break
    echo "<sip:$n@127.0.0.1:$kport;transport=udp>;regint=600;answermode=auto;audio_codecs=PCMA" >> "$d/accounts"
  done
  baresip -f "$d" -t $(( (secs + 40) * rounds * 2 + 60 )) < /dev/null > "$d/out.log" 2>&1 &
  pids+=($!)
done
# Every number registered (kamailio answers an OPTIONS to a registered one with the phone's 200).
python3 - "$kport" "$first" "$calls" <<'PY'
import socket, sys, time
port, first, calls = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); s.settimeout(0.3)
me = s.getsockname()
deadline = time.time() + 60
for n in range(first, first + calls):
    while True:
        m = (f"OPTIONS sip:{n}@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{n}x{time.time_ns()}\r\n"
             f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:{n}@127.0.0.1>\r\nCall-ID: p{n}{time.time_ns()}\r\nCSeq: 1 OPTIONS\r\n"
             "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        s.sendto(m.encode(), ("127.0.0.1", port))
        try:
            while True:
                r = s.recv(4096).decode("utf-8", "replace")
                if r.startswith("SIP/2.0 200"):
                    break
                if r.startswith("SIP/2.0 404"):
                    raise TimeoutError
        except (TimeoutError, socket.timeout):
            if time.time() > deadline:
                sys.exit(f"number {n} never registered")
            time.sleep(0.2)
            continue
        break
PY
# The peer caller: one baresip with the trunk's account, its microphone the tone.
cd_="$work/caller"; mkdir -p "$cd_"
csp=$(free_port); ccp=$(free_port)
baresip_config "$cd_" "$csp" "$ccp" "$work/tone.wav" 30000-30999 $((calls * 2))
echo "<sip:office@127.0.0.1:$kport;transport=udp>;auth_pass=$password;regint=0;answermode=manual;audio_codecs=PCMA" > "$cd_/accounts"
baresip -f "$cd_" -t $(( (secs + 40) * rounds * 2 + 60 )) < /dev/null > "$cd_/out.log" 2>&1 &
caller=$!
pids+=($caller)
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $ccp)).close()" 2>/dev/null; do sleep 0.2; done
for r in $(seq 1 "$rounds"); do
  "$bin" --proxy "127.0.0.1:$kport" --user office --password "$password" --first "$first" --calls "$calls" --secs "$secs" |
    sed "s/^{/{\"round\": $r, /" | tee -a "$work/results.jsonl"
  python3 bench/voice_peer.py --ctrl "$ccp" --pid "$caller" --proxy "127.0.0.1:$kport" --first "$first" --calls "$calls" --secs "$secs" |
    sed "s/^{/{\"round\": $r, /" | tee -a "$work/results.jsonl"
done
python3 - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in sorted({x["round"] for x in rows}):
    s = next(x for x in rows if x["round"] == r and x["impl"] == "stormbell")
    b = next(x for x in rows if x["round"] == r and x["impl"] == "baresip")
    print(json.dumps({"round": r, "cpu_per_call_ratio_stormbell_over_baresip":
                      round(s["cpu_core_share_per_call"] / b["cpu_core_share_per_call"], 3)
                      if b["cpu_core_share_per_call"] else None}))
PY
