#!/usr/bin/env python3
"""The peer of bench/voice_calls.sh: baresip itself placing the same calls.

    bench/voice_peer.py --baresip-dir DIR --ctrl PORT --pid PID --proxy HOST:PORT
                        --first NUMBER --calls N --secs S

A running baresip (its config in DIR, started by the script with a `sip:office@…` account
and an S-second tone as its microphone) is told over ctrl_tcp to `dial` N numbers at once.
Its calls end when the tone ends (aufile's end of file). Reported like stormbell's run: set-up
time (dial command to CALL_ESTABLISHED) p50/p99/max, baresip's CPU (utime + stime from
/proc/PID/stat) over the same window, per call, and its peak resident memory.
"""
import argparse
import json
import os
import socket
import threading
import time


def netstring(sock):
    """One netstring from the socket, or None at its end."""
    n = b""
    while True:
        c = sock.recv(1)
        if not c:
            return None
        if c == b":":
            break
        n += c
    want = int(n)
    body = b""
    while len(body) < want + 1:
        more = sock.recv(want + 1 - len(body))
        if not more:
            return None
        body += more
    return body[:-1].decode("utf-8", "replace")


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ctrl", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--proxy", required=True)
    p.add_argument("--first", type=int, required=True)
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--secs", type=int, default=20)
    a = p.parse_args()
    sock = socket.create_connection(("127.0.0.1", a.ctrl))
    dialled = {}
    established = {}
    closed = {}
    lock = threading.Lock()

    def reader():
        while True:
            msg = netstring(sock)
            if msg is None:
                return
            try:
                v = json.loads(msg)
            except ValueError:
                continue
            kind = v.get("type")
            peer = v.get("peeruri", "")
            num = peer.split("sip:", 1)[-1].split("@", 1)[0]
            with lock:
                if kind == "CALL_ESTABLISHED":
                    established.setdefault(num, time.monotonic())
                elif kind == "CALL_CLOSED":
                    closed.setdefault(num, time.monotonic())

    threading.Thread(target=reader, daemon=True).start()
    started = time.monotonic()
    for i in range(a.calls):
        num = str(a.first + i)
        body = json.dumps({"command": "dial", "params": f"sip:{num}@{a.proxy}", "token": num}).encode()
        with lock:
            dialled[num] = time.monotonic()
        sock.sendall(str(len(body)).encode() + b":" + body + b",")
    window_from, window_to = 3.0, max(a.secs - 3.0, 4.0)
    time.sleep(max(0.0, started + window_from - time.monotonic()))
    cpu0 = cpu_secs(a.pid)
    time.sleep(max(0.0, started + window_to - time.monotonic()))
    cpu1 = cpu_secs(a.pid)
    deadline = time.monotonic() + a.secs + 30
    while time.monotonic() < deadline:
        with lock:
            if len(closed) >= a.calls:
                break
        time.sleep(0.1)
    with lock:
        setups = sorted((established[n] - dialled[n]) * 1000 for n in established if n in dialled)
    def pct(q):
        if not setups:
            return None
        return setups[min(len(setups) - 1, round((len(setups) - 1) * q))]
    window = window_to - window_from
    print(json.dumps({
        "impl": "baresip",
        "calls": a.calls,
        "established": len(setups),
        "setup_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
        "all_up_in_window": bool(setups) and len(setups) == a.calls and max(setups) < window_from * 1000,
        "window_secs": window,
        "cpu_core_share_per_call": (cpu1 - cpu0) / window / a.calls,
        "cpu_core_share_all": (cpu1 - cpu0) / window,
        "peak_rss_kib": peak_kib(a.pid),
    }))


if __name__ == "__main__":
    main()
