#!/usr/bin/env python3
"""Writes ddtrace_links_v04.msgpack and ddtrace_links_v05.msgpack beside this file: the bytes
ddtrace's own v0.4 and v0.5 encoders (the ones its agent writer uses) make of one trace chunk
whose spans carry span links, with fixed ids and times. The order of a link's attributes varies from run to run
(ddtrace keeps them in a native hash map); the tests compare meaning, not that order.

    .venv/bin/python Tests/CodecsTests/Fixtures/datadog/capture_span_links.py

(written with ddtrace 4.16.0). The v0.4 body carries native `span_links`; the v0.5 body carries
the same links as the `_dd.span_links` meta JSON, which is how ddtrace writes them for v0.5.
"""
import os

from ddtrace._trace.span import Span
from ddtrace.internal._encoding import MsgpackEncoderV04, MsgpackEncoderV05

HERE = os.path.dirname(os.path.abspath(__file__))
TRACE = (0x6543210FEDCBA987 << 64) | 0x1122334455667788
T0 = 1_700_000_000_000_000_000


def spans():
    root = Span("consume", service="worker", span_id=0xA1, trace_id=TRACE, start=T0 / 1e9)
    root.set_metric("_sampling_priority_v1", 1)
    root.set_tag("span.kind", "consumer")
    root.set_link(trace_id=(0xAA << 64) | 0x55, span_id=0x66, tracestate="dd=s:1;t.dm:-4", flags=1,
                  attributes={"link.kind": "follows_from", "n": 3, "ok": True, "list": ["x", "y"]})
    root.set_link(trace_id=0x77, span_id=0x88)
    child = Span("db.query", service="worker", span_id=0xA2, parent_id=0xA1, trace_id=TRACE, start=T0 / 1e9 + 0.001)
    child.set_link(trace_id=0x99, span_id=0x9A, attributes={"quote": 'say "hi"'})
    child.finish(T0 / 1e9 + 0.002)
    root.finish(T0 / 1e9 + 0.005)
    return [root, child]


def body(encoder_class):
    e = encoder_class(1 << 20, 1 << 20)
    e.put(spans())
    payload = e.encode()
    while not isinstance(payload, (bytes, bytearray)):
        payload = payload[0]
    return bytes(payload)


for name, cls in (("ddtrace_links_v04.msgpack", MsgpackEncoderV04), ("ddtrace_links_v05.msgpack", MsgpackEncoderV05)):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(body(cls))
