#!/usr/bin/env python3
"""A strict test double of a county emergency-broadcast platform (应急广播平台), for stormbell's
EBD adapter tests.

No real EBD platform can run here (see docs/test-peers.md), so this is an
independent implementation of the receiving side, written from the message family as
docs/domain.md §5 describes it, with only the Python standard library and the
`openssl` command (OpenSSL 3: SM2 signatures, SM3 digests). It shares no code with stormbell.

It is strict: every package is checked (tar layout, file names, well-formed XML, required
fields and their shapes, resource codes, times, area codes, the auxiliary audio's size and SM3
digest, the SM2 signature when a public key is given) and anything wrong is answered with a
failure code and logged with the reason. Broadcasts then "play" on the terminals of the named
areas (from a terminals CSV, the platform's own inventory): each goes playing, then done; an
offline terminal fails; a silent one never reports.

Result codes (EBDResponse/ResultCode), as a Zhejiang county bridge uses them: 1 executed,
3 interface not supported, 4 signature verification failed, 5 EBMID not found. Ours: 2 for a
package whose content fails validation. BrdStateCode: 0 failed, 1 playing, 2 done.

    python3 platform.py --ebrid 0102… --peer 0103… --terminals terminals.csv [--pubkey p.pem
        --cert-sn SN] [--play-ms 300] [--log DIR]

prints "ebd 127.0.0.1:P control 127.0.0.1:Q" once both listen. Control (GET, JSON answers):
/status, /offline?id=EBRID, /silent?id=EBRID, /down?n=N (the next N posts get HTTP 503),
/fail?code=C&n=N (the next N EBM packages are answered 200 with ResultCode C).
"""

import argparse
import base64
import csv
import http.server
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlparse

LOCK = threading.Lock()
STATE = {
    "received": [],      # every package: {"type", "ebdid", "ok", "code", "why"}
    "ebms": {},          # EBMID -> {"areas", "terminals": {ebrid: {...}}, "stopped", "msg_type"}
    "offline": set(),
    "silent": set(),
    "down": 0,
    "fail": None,        # (code, n)
    "seq": 0,
    "duplicates": 0,     # EBM packages naming an EBMID already playing
}
ARGS = None
TERMINALS = []           # dicts: id, village, name, kind
DIGITS = re.compile(r"^[0-9]+$")
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


class Invalid(Exception):
    """Content that fails validation: (code, reason)."""

    def __init__(self, code, why):
        super().__init__(why)
        self.code = code
        self.why = why


def need(cond, why, code="2"):
    if not cond:
        raise Invalid(code, why)


def text(el, path):
    found = el.find(path)
    return None if found is None else (found.text or "").strip()


def required(el, path):
    v = text(el, path)
    need(v, f"missing or empty <{path}>")
    return v


def digits(v, n, what):
    need(v is not None and len(v) == n and DIGITS.match(v), f"{what} {v!r} is not {n} digits")


def stamp(v, what):
    need(v is not None and TIME.match(v), f"{what} {v!r} is not YYYY-MM-DD HH:MM:SS")
    return time.mktime(time.strptime(v, "%Y-%m-%d %H:%M:%S"))


def sm3_hex(data):
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        out = subprocess.run(["openssl", "dgst", "-sm3", "-r", f.name], capture_output=True, check=True)
    return out.stdout.split()[0].decode()


def verify_signature(doc_bytes, sig_xml, ebdid):
    """Check the signature file and the SM2 signature over the main document's bytes."""
    try:
        sig = ET.fromstring(sig_xml)
    except ET.ParseError as e:
        raise Invalid("4", f"signature file is not well-formed: {e}")
    need(sig.tag == "Signature", f"signature root is <{sig.tag}>", "4")
    need(text(sig, "RelatedEBD/EBDID") == ebdid, "signature names another EBDID", "4")
    need(text(sig, "DigestAlgorithm") == "SM3", "DigestAlgorithm is not SM3", "4")
    need(text(sig, "SignatureAlgorithm") == "SM2", "SignatureAlgorithm is not SM2", "4")
    need(text(sig, "SignatureCert/CertSN") == ARGS.cert_sn, "unknown certificate serial number", "4")
    need(re.match(r"^[0-9a-f]+$", text(sig, "SignatureTime") or ""), "SignatureTime is not hex seconds", "4")
    try:
        der = base64.b64decode(text(sig, "SignatureValue") or "", validate=True)
    except Exception:
        raise Invalid("4", "SignatureValue is not base64")
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "doc"), "wb") as f:
            f.write(doc_bytes)
        with open(os.path.join(d, "sig"), "wb") as f:
            f.write(der)
        r = subprocess.run(
            ["openssl", "dgst", "-sm3", "-verify", ARGS.pubkey, "-sigopt", "distid:1234567812345678",
             "-signature", os.path.join(d, "sig"), os.path.join(d, "doc")],
            capture_output=True,
        )
    need(r.returncode == 0 and b"Verified OK" in r.stdout, "SM2 signature does not verify", "4")


def check_package(body):
    """Validate a package: (ebdid, ebd element, members)."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(body), mode="r:")
    except tarfile.TarError as e:
        raise Invalid("2", f"not a plain tar package: {e}")
    members = {}
    for m in tar.getmembers():
        need(m.isfile(), f"tar member {m.name!r} is not a regular file")
        need("/" not in m.name and m.name not in (".", ".."), f"tar member {m.name!r} has a path")
        need(m.name not in members, f"tar member {m.name!r} twice")
        members[m.name] = tar.extractfile(m).read()
    mains = [n for n in members if n.startswith("EBDB_")]
    need(len(mains) == 1, f"expected exactly one EBDB_*.xml, found {mains}")
    main = mains[0]
    m = re.match(r"^EBDB_([0-9]{36})\.xml$", main)
    need(m, f"main document name {main!r} is not EBDB_<36 digits>.xml")
    ebdid = m.group(1)
    doc_bytes = members[main]
    try:
        ebd = ET.fromstring(doc_bytes)
    except ET.ParseError as e:
        raise Invalid("2", f"{main} is not well-formed XML: {e}")
    need(ebd.tag == "EBD", f"root element is <{ebd.tag}>, not <EBD>")
    need(required(ebd, "EBDVersion") == "1.0", "EBDVersion is not 1.0")
    need(required(ebd, "EBDID") == ebdid, "EBDID differs from the file name")
    src = required(ebd, "SRC/EBRID")
    digits(src, 18, "SRC/EBRID")
    need(src == ARGS.peer, f"SRC/EBRID {src} is not the subordinate platform this one serves")
    need(required(ebd, "DEST/EBRID") == ARGS.ebrid, "DEST/EBRID is not this platform")
    need(ebdid.startswith("01" + src), "EBDID does not start with 01 + SRC/EBRID")
    stamp(text(ebd, "EBDTime"), "EBDTime")
    sig_name = f"EBDS_EBDB_{ebdid}.xml"
    if ARGS.pubkey:
        need(sig_name in members, "no signature file, and this platform requires one", "4")
        verify_signature(doc_bytes, members[sig_name], ebdid)
    return ebdid, ebd, members, sig_name


def answer(kind, related, body_xml):
    with LOCK:
        STATE["seq"] += 1
        seq = STATE["seq"]
    ebdid = "01" + ARGS.ebrid + f"{seq:016d}"
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<EBD><EBDVersion>1.0</EBDVersion>'
        f"<EBDID>{ebdid}</EBDID><EBDType>{kind}</EBDType>"
        f"<SRC><EBRID>{ARGS.ebrid}</EBRID></SRC><DEST><EBRID>{ARGS.peer}</EBRID></DEST>"
        f"<EBDTime>{now}</EBDTime><RelatedEBD><EBDID>{related}</EBDID></RelatedEBD>{body_xml}</EBD>"
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(f"EBDB_{ebdid}.xml")
        info.size = len(doc)
        info.mtime = int(time.time())
        t.addfile(info, io.BytesIO(doc))
    return out.getvalue()


def response(related, code, desc):
    return answer("EBDResponse", related,
                  f"<EBDResponse><ResultCode>{code}</ResultCode><ResultDesc>{desc}</ResultDesc></EBDResponse>")


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def handle_ebm(ebdid, ebd, members, sig_name):
    ebm = ebd.find("EBM")
    need(ebm is not None, "EBDType EBM without <EBM>")
    need(required(ebm, "EBMVersion") == "1.0", "EBMVersion is not 1.0")
    ebmid = required(ebm, "EBMID")
    digits(ebmid, 34, "EBMID")
    need(ebmid.startswith(ARGS.peer), "EBMID does not start with the sender's EBRID")
    need(required(ebm, "TestType") in ("0", "1"), "TestType is not 0 or 1")
    start = stamp(text(ebm, "StartTime"), "StartTime")
    end = stamp(text(ebm, "EndTime"), "EndTime")
    need(end > start, "EndTime is not after StartTime")
    msg_type = required(ebm, "MsgBasicInfo/MsgType")
    need(msg_type in ("1", "2"), f"MsgType {msg_type!r} is not 1 (play) or 2 (stop)")
    required(ebm, "MsgBasicInfo/SenderName")
    need(required(ebm, "MsgBasicInfo/SenderCode") == ARGS.peer, "SenderCode is not the sender's EBRID")
    stamp(text(ebm, "MsgBasicInfo/SentTime"), "SentTime")
    need(required(ebm, "MsgBasicInfo/Severity") in ("1", "2", "3", "4"), "Severity is not 1-4")
    event = text(ebm, "MsgBasicInfo/EventType") or ""
    need(event == "" or re.match(r"^[0-9]{2}[A-Z][0-9]{2}$", event), f"EventType {event!r} is not a national code")
    need(required(ebm, "MsgContent/LanguageCode") == "zho", "LanguageCode is not zho")
    required(ebm, "MsgContent/MsgTitle")
    required(ebm, "MsgContent/MsgDesc")
    areas = required(ebm, "MsgContent/AreaCode").split(",")
    for a in areas:
        digits(a, 12, "AreaCode")
    allowed = {f"EBDB_{ebdid}.xml", sig_name}
    aux = ebm.find("MsgContent/Auxiliary")
    if aux is not None:
        need(required(aux, "AuxiliaryType") == "2", "AuxiliaryType is not 2 (MP3 file)")
        name = required(aux, "AuxiliaryDesc")
        need(name in members, f"the auxiliary file {name!r} is not in the package")
        data = members[name]
        need(str(len(data)) == required(aux, "Size"), f"auxiliary size {aux.findtext('Size')} is not {len(data)}")
        need(sm3_hex(data) == required(aux, "Digest").lower(), "auxiliary SM3 digest does not match")
        need(data[:1] == b"\xff" and data[1] & 0xE0 == 0xE0, "auxiliary file is not an MP3 stream")
        allowed.add(name)
    extra = set(members) - allowed
    need(not extra, f"unexpected files in the package: {sorted(extra)}")
    related = text(ebm, "RelatedEBM/EBMID")
    with LOCK:
        if STATE["fail"]:
            code, n = STATE["fail"]
            STATE["fail"] = (code, n - 1) if n > 1 else None
            raise Invalid(code, "failure requested by the test")
        if msg_type == "2":
            need(related and related in STATE["ebms"], f"stop for unknown EBMID {related}", "5")
            old = STATE["ebms"][related]
            old["stopped"] = time.time()
            STATE["ebms"][ebmid] = {"areas": areas, "terminals": {}, "msg_type": "2", "related": related}
            return
        if related:
            need(related in STATE["ebms"], f"RelatedEBM {related} is unknown", "5")
        if ebmid in STATE["ebms"]:
            # The same broadcast again (a sender retrying after losing our answer): accepted,
            # not played twice.
            STATE["duplicates"] += 1
            return
        now = time.time()
        terms = {}
        for t in TERMINALS:
            if t["village"] in areas:
                terms[t["id"]] = {"start": now, "offline": t["id"] in STATE["offline"],
                                  "silent": t["id"] in STATE["silent"]}
        STATE["ebms"][ebmid] = {"areas": areas, "terminals": terms, "msg_type": "1",
                                "related": related, "stopped": None}


def ebm_state(ebmid):
    """EBMStateResponse body for a broadcast, or None if unknown."""
    with LOCK:
        b = STATE["ebms"].get(ebmid)
        if b is None:
            return None
        now = time.time()
        items = []
        done = failed = playing = 0
        for tid, t in sorted(b["terminals"].items()):
            if t["silent"]:
                continue
            if t["offline"]:
                code, desc = 0, "终端离线"
                failed += 1
            elif b.get("stopped") or now - t["start"] >= ARGS.play_ms / 1000:
                code, desc = 2, "播发完成"
                done += 1
            else:
                code, desc = 1, "正在播发"
                playing += 1
            items.append(f"<ResBrdItem><RptTime>{time.strftime('%Y-%m-%d %H:%M:%S')}</RptTime>"
                         f"<EBEBS><EBEID>{tid}</EBEID><ResultCode>{code}</ResultCode>"
                         f"<ResultDesc>{desc}</ResultDesc></EBEBS></ResBrdItem>")
        total = len(b["terminals"])
        if b["msg_type"] == "2":
            state, sdesc = 2, "停止播发完成"
        elif playing or (total and done + failed < total and not failed):
            state, sdesc = 1, "正在播发"
        elif done:
            state, sdesc = 2, "播发完成"
        else:
            state, sdesc = 0, "播发失败"
        cov = 0 if total == 0 else round(100.0 * done / total, 1)
        return (f"<EBMStateResponse><RptTime>{time.strftime('%Y-%m-%d %H:%M:%S')}</RptTime>"
                f"<EBM><EBMID>{ebmid}</EBMID></EBM><BrdStateCode>{state}</BrdStateCode>"
                f"<BrdStateDesc>{sdesc}</BrdStateDesc><Coverage><CoveragePercent>{cov}</CoveragePercent>"
                f"<AreaCode>{','.join(b['areas'])}</AreaCode></Coverage>"
                f"<ResBrdInfo>{''.join(items)}</ResBrdInfo></EBMStateResponse>")


def log(entry):
    with LOCK:
        STATE["received"].append(entry)
    if ARGS.log:
        with open(os.path.join(ARGS.log, "received.jsonl"), "a") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


class Platform(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body, ctype="application/x-tar"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        with LOCK:
            if STATE["down"] > 0:
                STATE["down"] -= 1
                down = True
            else:
                down = False
        if down:
            log({"type": None, "ok": False, "code": "503", "why": "down on request"})
            return self.reply(503, b"down for the test", "text/plain")
        ebdid, kind = "0" * 36, None
        try:
            need(self.headers.get("Content-Type") == "application/x-tar",
                 f"Content-Type {self.headers.get('Content-Type')!r} is not application/x-tar")
            ebdid, ebd, members, sig_name = check_package(body)
            kind = required(ebd, "EBDType")
            if kind == "EBM":
                handle_ebm(ebdid, ebd, members, sig_name)
                out = response(ebdid, "1", "执行成功")
            elif kind == "EBMStateRequest":
                ebmid = required(ebd, "EBMStateRequest/EBM/EBMID")
                st = ebm_state(ebmid)
                need(st is not None, f"EBMID {ebmid} not found", "5")
                out = answer("EBMStateResponse", ebdid, st)
            elif kind == "ConnectionCheck":
                stamp(text(ebd, "ConnectionCheck/RptTime"), "RptTime")
                out = response(ebdid, "1", "执行成功")
            elif kind == "OMDRequest":
                need(required(ebd, "OMDRequest/OMDType") == "EBRDTState", "only EBRDTState reports", "3")
                with LOCK:
                    items = "".join(
                        f"<EBRDT><EBRID>{t['id']}</EBRID><StateCode>{3 if t['id'] in STATE['offline'] else 1}</StateCode>"
                        f"<StateDesc>{'离线' if t['id'] in STATE['offline'] else '正常'}</StateDesc></EBRDT>"
                        for t in TERMINALS)
                out = answer("EBRDTState", ebdid, f"<EBRDTState>{items}</EBRDTState>")
            else:
                raise Invalid("3", f"EBDType {kind!r} is not supported")
            log({"type": kind, "ebdid": ebdid, "ok": True, "code": "1", "why": ""})
        except Invalid as e:
            log({"type": kind, "ebdid": ebdid, "ok": False, "code": e.code, "why": e.why})
            desc = {"2": "内容校验失败: ", "3": "该接口暂不支持: ", "4": "签名验证失败: ",
                    "5": "查找不到该EBMID: "}.get(e.code, "")
            out = response(ebdid, e.code, esc(desc + e.why))
        self.reply(200, out)

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        with LOCK:
            if u.path == "/status":
                body = {
                    "duplicates": STATE["duplicates"],
                    "received": STATE["received"],
                    "ebms": {k: {"areas": v["areas"], "msg_type": v["msg_type"],
                                 "related": v.get("related"), "stopped": bool(v.get("stopped")),
                                 "terminals": sorted(v["terminals"])}
                             for k, v in STATE["ebms"].items()},
                }
            elif u.path == "/offline":
                STATE["offline"].add(q["id"])
                body = {"ok": True}
            elif u.path == "/silent":
                STATE["silent"].add(q["id"])
                body = {"ok": True}
            elif u.path == "/down":
                STATE["down"] = int(q.get("n", "1"))
                body = {"ok": True}
            elif u.path == "/fail":
                STATE["fail"] = (q["code"], int(q.get("n", "1")))
                body = {"ok": True}
            else:
                return self.reply(404, b"{}", "application/json")
        self.reply(200, json.dumps(body, ensure_ascii=False).encode(), "application/json")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--ebrid", required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--terminals", required=True)
    p.add_argument("--pubkey")
    p.add_argument("--cert-sn", default="")
    p.add_argument("--play-ms", type=int, default=300)
    p.add_argument("--log")
    ARGS = p.parse_args()
    with open(ARGS.terminals, newline="", encoding="utf-8") as f:
        TERMINALS.extend(csv.DictReader(f))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Platform)
    ctl = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Platform)
    for s in (srv, ctl):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print(f"ebd 127.0.0.1:{srv.server_address[1]} control 127.0.0.1:{ctl.server_address[1]}", flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin (or dies)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
