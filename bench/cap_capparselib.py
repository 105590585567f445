#!/usr/bin/env python3
"""Peer for bench/cap_vs_python.sh: parse CAP files with capparselib (PyPI) in a loop.

  cap_capparselib.py --accepted FILE...      print the files capparselib can parse
  cap_capparselib.py [--seconds S] FILE...   time parsing them, print JSON

capparselib validates each document against its XSD while objectifying it with lxml, which
is the closest it comes to stormbell's parse-and-validate.
"""
import json
import sys
import time

from capparselib.parsers import CAPParser


def text(path):
    raw = open(path, "rb").read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def main(argv):
    if argv and argv[0] == "--accepted":
        for f in argv[1:]:
            try:
                CAPParser(text(f)).as_dict()
                print(f)
            except Exception as e:  # capparselib raises bare Exceptions
                print(f"capparselib cannot read {f}: {str(e)[:100]}", file=sys.stderr)
        return
    seconds = 3.0
    if argv and argv[0] == "--seconds":
        seconds, argv = float(argv[1]), argv[2:]
    docs = [text(f) for f in argv]
    total_bytes = sum(len(d.encode("utf-8")) for d in docs)
    start = time.perf_counter()
    alerts = passes = 0
    while time.perf_counter() - start < seconds:
        for d in docs:
            alerts += len(CAPParser(d).as_dict())
        passes += 1
    t = time.perf_counter() - start
    print(json.dumps({
        "implementation": "capparselib",
        "files": len(docs),
        "alerts": alerts,
        "seconds": round(t, 3),
        "alerts_per_sec": round(alerts / t),
        "mb_per_sec": round(total_bytes * passes / t / 1e6, 1),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
