#!/usr/bin/env python3
"""The peer for the SMS throughput benchmark: the Python SMPP client smpplib (PyPI, 2.2.4)
sending the same UCS-2 messages to the same SMSC as `sms_throughput raw`.

    smpplib_peer.py HOST PORT COUNT DEPTH

DEPTH 1 waits for each submit_sm_resp before the next submit; DEPTH > 1 keeps that many
submits in flight (smpplib has no window of its own: we send, then read one response per
send once DEPTH are outstanding). Prints one JSON line.
"""
import json
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.gsm

TEXT = "【东溟县防汛办】上坞村山洪灾害红色预警：请立即组织危险区群众转移至溪口镇中心小学，老弱病残优先。回复1收到"


def main():
    host, port, count, depth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    client = smpplib.client.Client(host, port, allow_unknown_opt_params=True)
    accepted = 0

    def on_resp(pdu):
        nonlocal accepted
        if pdu.status == 0:
            accepted += 1

    client.set_message_sent_handler(on_resp)
    client.connect()
    client.bind_transceiver(system_id="county", password="secret")
    payload = TEXT.encode("utf-16-be")
    assert len(payload) <= 140
    start = time.perf_counter()
    outstanding = 0
    for i in range(count):
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
            source_addr="12379",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr="8613%d%08d" % (5 + i % 5, i),
            short_message=payload,
            data_coding=smpplib.consts.SMPP_ENCODING_ISO10646,
            esm_class=0,
            registered_delivery=0,
        )
        outstanding += 1
        if outstanding >= depth:
            client.read_once()
            outstanding -= 1
    while outstanding > 0:
        client.read_once()
        outstanding -= 1
    secs = time.perf_counter() - start
    client.unbind()
    client.disconnect()
    print(json.dumps({
        "peer": "smpplib", "depth": depth, "count": count, "accepted": accepted,
        "seconds": round(secs, 3), "per_sec": round(accepted / secs),
    }))


if __name__ == "__main__":
    main()
