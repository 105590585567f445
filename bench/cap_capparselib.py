#!/usr/bin/env python3
"""Peer for bench/cap_vs_python.sh: parse CAP files with capparselib (PyPI) in a loop.

  cap_capparselib.py --accepted FILE...      print the files capparselib can parse
  cap_capparselib.py [--seconds S] [--cached-schema] FILE...
                                             time parsing them, print JSON

capparselib validates each document against its XSD while objectifying it with lxml, which
is the closest it comes to stormbell's parse-and-validate. As shipped, it loads and compiles
the XSD for every document (about half its time). --cached-schema gives it its best honest
configuration, what a Python engineer would write: the same library, its parser (with the
compiled schema) made once per CAP version and reused.
"""
import json
import os
import sys
import time

from lxml import etree, objectify
from capparselib import parsers
from capparselib.parsers import CAPParser

_PARSERS = {}


def _cached_objectified_xml(self):
    """capparselib's get_objectified_xml, with the schema parser built once per XML type."""
    parser = _PARSERS.get((self.cap_xml_type, self.recover))
    if parser is None:
        xsd = os.path.join(parsers.CAPLIBRARY_PATH, parsers.XML_TYPE_XSD_MAPPINGS[self.cap_xml_type])
        with open(xsd) as f:
            schema = etree.XMLSchema(etree.parse(f))
        parser = objectify.makeparser(schema=schema, recover=self.recover, remove_blank_text=True)
        _PARSERS[(self.cap_xml_type, self.recover)] = parser
    try:
        return objectify.fromstring(self.xml, parser)
    except etree.XMLSyntaxError:
        raise Exception("Error objectifying XML")


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
    name = "capparselib"
    if argv and argv[0] == "--seconds":
        seconds, argv = float(argv[1]), argv[2:]
    if argv and argv[0] == "--cached-schema":
        CAPParser.get_objectified_xml = _cached_objectified_xml
        name, argv = "capparselib, schema compiled once", argv[1:]
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
        "implementation": name,
        "files": len(docs),
        "alerts": alerts,
        "seconds": round(t, 3),
        "alerts_per_sec": round(alerts / t),
        "mb_per_sec": round(total_bytes * passes / t / 1e6, 1),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
