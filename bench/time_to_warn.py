#!/usr/bin/env python3
"""Time to warn, end to end, with the real stages on 127.0.0.1.

Each run: a fresh copy of a database holding the synthetic county (fixtures/county); a feed
served over HTTP that is quiet until the moment the storm is *published*:
  - `--storm rain` (the default): a rain table (the national hydrological table's columns, one
    synthetic gauge beside every village) that says 0 mm, then an hour of 120 mm at every gauge
    (over every flash-flood zone's 立即转移 line);
  - `--storm typhoon`: CMA `WTPQ20 BABJ` subjective-forecast bulletins, laid out as the real
    ones in tests/data/real-formats/01-tac-samples are: a tropical depression far out at sea,
    then a synthetic super typhoon 70 km off the county whose 12-level circle (64KTS) covers it
    now, which raises the typhoon red warning;
the node-smpp SMSC (tests/smsc/smsc.js); `stormbell run` polling the feed every second, its
web port serving the CAP Atom feed, one SMS account at a fixed TPS. Measured per run, from the
moment the poll that carried the storm was served:
  - the first CAP alert on the Atom feed (/cap/feed.atom, polled every 10 ms);
  - the first text accepted by the SMSC;
  - the last text accepted, against the ideal (parts - 1) / TPS after the first.
Prints one JSON line per run and a summary (p50 / p99 / max) at the end.

    bench/time_to_warn.py [--runs 20] [--tps 100] [--storm rain|typhoon]
"""

import argparse
import http.server
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "stormbell")
CST = timezone(timedelta(hours=8))


def villages():
    with open(os.path.join(ROOT, "fixtures", "county", "villages.csv"), encoding="utf-8") as f:
        rows = f.read().splitlines()[1:]
    out = []
    for r in rows:
        c = r.split(",")
        out.append((c[0], c[1], float(c[3]), float(c[4])))
    return out


def table(gauges, mm):
    """An hour of rain ending at the current minute, at every gauge (Beijing time, no offset,
    as the national table writes it)."""
    tm = datetime.now(CST).strftime("%Y-%m-%d %H:%M:00")
    lines = ["STCD,STNM,LGTD,LTTD,TM,DRP,INTV"]
    for i, (_, name, lon, lat) in enumerate(gauges):
        lines.append(f"7049{i:04d},{name}雨量站（合成）,{lon + 0.002:.6f},{lat + 0.002:.6f},{tm},{mm:.1f},1.00")
    return ("\n".join(lines) + "\n").encode("utf-8")


def bulletin(storm):
    """A CMA subjective-forecast bulletin analysed at the current hour (UTC, `DDHHMM` as CMA
    writes it; the month and year come from the time it is received). `storm` False: a
    tropical depression 1,000 km out at sea, nothing for the county; True: a super typhoon
    70 km south-east of it heading north-west across it (synthetic, not a real storm)."""
    t = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    if not storm:
        body = [
            f"TD  01 INITIAL TIME {t:%d%H%M} UTC",
            "00HR 17.2N 131.5E 1002HPA 15M/S",
            "MOVE W 15KM/H",
            "P+12HR 17.4N 130.6E 1000HPA 15M/S",
            "P+24HR 17.7N 129.5E 998HPA 18M/S=",
        ]
    else:
        body = [
            f"SuperTY STORMBELL 2699 (2699) INITIAL TIME {t:%d%H%M} UTC",
            "00HR 27.9N 121.9E 930HPA 58M/S",
            "30KTS WINDS 380KM NORTHEAST",
            "            350KM SOUTHEAST",
            "            300KM SOUTHWEST",
            "            330KM NORTHWEST",
            "50KTS WINDS 180KM NORTHEAST",
            "            160KM SOUTHEAST",
            "            140KM SOUTHWEST",
            "            160KM NORTHWEST",
            "64KTS WINDS 110KM NORTHEAST",
            "            100KM SOUTHEAST",
            "            90KM SOUTHWEST",
            "            100KM NORTHWEST",
            "MOVE NW 20KM/H",
            "P+12HR 29.0N 120.6E 950HPA 50M/S",
            "P+24HR 30.2N 119.4E 975HPA 35M/S",
            "P+36HR 31.4N 118.5E 990HPA 23M/S=",
        ]
    lines = ["ZCZC", f"WTPQ20 BABJ {t:%d%H%M}", "SUBJECTIVE FORECAST", *body, "NNNN"]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


class Feed:
    """The storm's feed server: quiet until publish(), then the storm; notes when the storm was
    first served."""

    def __init__(self, gauges, kind):
        self.gauges = gauges
        self.kind = kind
        self.storm = None
        self.served = None
        self.polls = 0
        feed = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = feed.storm if feed.storm is not None else feed.quiet()
                if feed.storm is not None and feed.served is None:
                    feed.served = time.time()
                feed.polls += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/csv; charset=utf-8" if feed.kind == "rain" else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        name = "rain.csv" if kind == "rain" else "WTPQ20_BABJ.txt"
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def quiet(self):
        return table(self.gauges, 0.0) if self.kind == "rain" else bulletin(False)

    def publish(self):
        self.storm = table(self.gauges, 120.0) if self.kind == "rain" else bulletin(True)
        return time.time()

    def close(self):
        self.httpd.shutdown()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait(what, secs, cond, every=0.01):
    end = time.time() + secs
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise SystemExit(f"time_to_warn: {what}: not within {secs} s")


def at(line):
    return datetime.fromisoformat(json.loads(line)["at"].replace("Z", "+00:00")).timestamp()


def one_run(base_db, gauges, tps, storm, work):
    db = os.path.join(work, "run.db")
    for f in os.listdir(work):
        if f.startswith("run.db"):
            os.remove(os.path.join(work, f))
    shutil.copy(base_db, db)
    smsc_log = os.path.join(work, "smsc")
    shutil.rmtree(smsc_log, ignore_errors=True)
    smsc = subprocess.Popen(
        ["node", os.path.join(ROOT, "tests", "smsc", "smsc.js"), "--log", smsc_log, "--receipt-ms", "50"],
        stdout=subprocess.PIPE,
        text=True,
    )
    smpp = smsc.stdout.readline().split()[1]
    feed = Feed(gauges, storm)
    web = free_port()
    cfg = os.path.join(work, "stormbell.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(
            f"""[web]
listen = "127.0.0.1:{web}"

[[feeds.source]]
id = "{storm}"
kind = "{'rainfall' if storm == 'rain' else 'bulletin'}"
url = "{feed.url}"
interval_secs = 1

[[dispatch.sms.accounts]]
name = "main"
address = "{smpp}"
system_id = "county"
password = "secret"
source = "12379"
tps = {tps}
"""
        )
    log = open(os.path.join(work, "daemon.log"), "w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORMBELL")}
    daemon = subprocess.Popen(
        [BIN, "--config", cfg, "--db", db, "--log-format", "json", "run"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    atom = f"http://127.0.0.1:{web}/cap/feed.atom"

    def atom_entries():
        try:
            with urllib.request.urlopen(atom, timeout=2) as r:
                return r.read().count(b"<entry")
        except OSError:
            return None

    try:
        # Running, polling the quiet table, the Atom feed served (and empty).
        wait("the daemon polling the quiet feed", 60, lambda: feed.polls >= 2, 0.05)
        wait("the Atom feed", 30, lambda: atom_entries() == 0, 0.05)
        published = feed.publish()
        t_atom = wait("a CAP alert on the Atom feed", 60, lambda: (atom_entries() or 0) > 0 and time.time())
        # Every submit_sm the centre accepted, with its time (one line per part).
        phones = os.path.join(smsc_log, "submits.jsonl")

        def first_line():
            try:
                with open(phones, encoding="utf-8") as f:
                    return f.readline().strip() or None
            except OSError:
                return None

        first = at(wait("the first text at the SMSC", 60, first_line))
        ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)

        def settled():
            n, left = ro.execute(
                "SELECT count(*), coalesce(sum(state IN ('queued', 'submitting', 'reconciling')), 0)"
                " FROM dispatch_message WHERE purpose = 'warning'"
            ).fetchone()
            return n > 0 and left == 0

        wait("every text accepted", 600, settled, 0.2)
        parts = ro.execute(
            "SELECT coalesce(sum(segments), 0), count(*) FROM dispatch_message"
            " WHERE purpose = 'warning' AND state IN ('accepted', 'delivered', 'delivery_unknown')"
        ).fetchone()
        warnings = ro.execute("SELECT count(*) FROM corr_decision").fetchone()[0]
        # What the texts warned of: hazard and tier, with how many texts each.
        warned = dict(
            ro.execute(
                "SELECT hazard || ' ' || tier, count(*) FROM dispatch_message"
                " WHERE purpose = 'warning' GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        ro.close()
        with open(phones, encoding="utf-8") as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        last = max(at(l) for l in lines)
        ideal = (len(lines) - 1) / tps
        return {
            "served_after_publish_ms": round((feed.served - published) * 1000, 1),
            "atom_after_poll_ms": round((t_atom - feed.served) * 1000, 1),
            "first_text_after_poll_ms": round((first - feed.served) * 1000, 1),
            "texts": parts[1],
            "parts": parts[0],
            "parts_at_smsc": len(lines),
            "decisions": warnings,
            "warned": warned,
            "last_after_first_s": round(last - first, 2),
            "ideal_s": round(ideal, 2),
            "last_over_ideal_pct": round((last - first - ideal) / ideal * 100, 2),
        }
    except SystemExit:
        log.flush()
        with open(os.path.join(work, "daemon.log"), encoding="utf-8") as f:
            sys.stderr.write("".join(f.readlines()[-15:]))
        raise
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        smsc.terminate()
        smsc.wait(timeout=10)
        feed.close()
        log.close()


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p * len(v) + 0.5)) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tps", type=int, default=100)
    ap.add_argument("--storm", choices=["rain", "typhoon"], default="rain")
    a = ap.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit("build it first: cargo build --release")
    work = tempfile.mkdtemp(prefix="time-to-warn-")
    try:
        base = os.path.join(work, "county.db")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STORMBELL")}
        subprocess.run(
            [BIN, "--db", base, "registry", "import", os.path.join(ROOT, "fixtures", "county")],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        # The import closes its database before exiting: the file alone is copied for each run.
        gauges = villages()
        runs = []
        for i in range(a.runs):
            r = one_run(base, gauges, a.tps, a.storm, work)
            r["run"] = i + 1
            print(json.dumps(r, ensure_ascii=False), flush=True)
            runs.append(r)
        summary = {"runs": len(runs), "tps": a.tps, "storm": a.storm}
        for k in ("atom_after_poll_ms", "first_text_after_poll_ms", "last_over_ideal_pct"):
            v = [r[k] for r in runs]
            summary[k] = {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "max": max(v)}
        print(json.dumps({"summary": summary}, ensure_ascii=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
