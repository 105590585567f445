#!/usr/bin/env python3
"""A rain gauge's RTU speaking SL 651-2014 (HEX/BCD) to a central station, for stormbell's
tests: it builds its frames itself from the standard's layout (its own BCD and CRC code),
sends them the way GPRS links deliver them (in pieces, with junk, cut short), and checks
every answer the centre gives: a downlink frame (direction 8) with the station's address
before the centre's, the report's function code and serial number, the end character
expected (04 EOT, or 15 NAK for a corrupted frame) and a valid CRC, high byte first.

Usage: rtu.py PORT < steps.json   (a JSON list of steps; prints one JSON result per step)

A step: {"send": "<hex>"} (a frame given whole, e.g. a real one), or {"build": {...}} with
station, centre, password, function, serial, sent "YYMMDDhhmmss", type "P", observed
"YYMMDDhhmm", elements [[id_hex, def_hex, value_hex], ...] and drp [12 ints]; options:
"chunks" (send in N pieces), "junk" (hex bytes before), "corrupt" (flip a body byte),
"truncate" (send half, then close), "expect" ("04", "15" or "none").
"""

import json
import socket
import sys


def crc16(data):
    c = 0xFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return c


def bcd(digits):
    return bytes.fromhex(digits)


def build(s):
    body = bytearray()
    body += s.get("serial", 1).to_bytes(2, "big")
    body += bcd(s["sent"])
    body += b"\xF1\xF1" + bcd(s["station"]) + s.get("type", "P").encode()
    body += b"\xF0\xF0" + bcd(s["observed"])
    for ident, definition, value in s.get("elements", []):
        body += bytes.fromhex(ident) + bytes.fromhex(definition) + bytes.fromhex(value)
    if "drp" in s:
        body += b"\xF4\x60" + bytes(s["drp"])
    head = bytearray(b"\x7E\x7E")
    head += bytes([s.get("centre", 1)]) + bcd(s["station"]) + bcd(s.get("password", "0000"))
    head += bytes([int(s.get("function", "32"), 16)])
    head += (len(body) & 0x0FFF).to_bytes(2, "big") + b"\x02"
    frame = head + body + b"\x03"
    return bytes(frame + crc16(frame).to_bytes(2, "big"))


def check_answer(ans, sent):
    """What is wrong with the centre's answer to `sent`, or None."""
    if len(ans) < 17:
        return f"answer too short: {ans.hex()}"
    if len(ans) != 14 + (int.from_bytes(ans[11:13], "big") & 0x0FFF) + 3:
        return f"answer's length does not match its header: {ans.hex()}"
    if ans[:2] != b"\x7E\x7E":
        return "answer does not start 7E7E"
    if crc16(ans[:-2]) != int.from_bytes(ans[-2:], "big"):
        return "answer CRC wrong"
    if ans[11] >> 4 != 8:
        return "answer is not a downlink frame (direction 8)"
    if ans[2:7] != sent[3:8]:
        return f"answer's station {ans[2:7].hex()} is not {sent[3:8].hex()}"
    if ans[7] != sent[2]:
        return "answer's centre address differs"
    if ans[10] != sent[10]:
        return f"answer's function {ans[10]:02X} is not {sent[10]:02X}"
    return None


def run_step(port, step):
    frame = bytes.fromhex(step["send"]) if "send" in step else build(step["build"])
    if step.get("corrupt"):
        frame = bytearray(frame)
        frame[20] ^= 0x01
        frame = bytes(frame)
    data = bytes.fromhex(step.get("junk", "")) + frame
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if step.get("truncate"):
            s.sendall(data[: len(data) // 2])
            s.shutdown(socket.SHUT_WR)
            rest = s.recv(64)
            return {"ok": rest == b"", "step": step.get("name"), "answer": rest.hex()}
        # Pieces as a GPRS link delivers them: each written on its own (no Nagle batching).
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n = step.get("chunks", 1)
        size = max(1, len(data) // n)
        for i in range(0, len(data), size):
            s.sendall(data[i:i + size])
        expect = step.get("expect", "04")
        ans = b""
        need = 14
        while len(ans) < need:
            part = s.recv(256)
            if not part:
                break
            ans += part
            if len(ans) >= 13:
                # Header, body (its length in the header), end character, CRC.
                need = 14 + (int.from_bytes(ans[11:13], "big") & 0x0FFF) + 3
        if expect == "none":
            return {"ok": ans == b"", "step": step.get("name"), "answer": ans.hex()}
        problem = check_answer(ans, frame)
        if problem is None and ans[-3] != int(expect, 16):
            problem = f"answer ends {ans[-3]:02X}, expected {expect}"
        serial = frame[14:16] if frame[13] == 2 else None
        if problem is None and expect == "04" and ans[14:16] != serial:
            problem = f"answer's serial {ans[14:16].hex()} is not {serial.hex()}"
        return {"ok": problem is None, "step": step.get("name"), "problem": problem,
                "answer": ans.hex()}
    finally:
        s.close()


def main():
    port = int(sys.argv[1])
    for step in json.load(sys.stdin):
        print(json.dumps(run_step(port, step)), flush=True)


if __name__ == "__main__":
    main()
