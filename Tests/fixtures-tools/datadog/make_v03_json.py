#!/usr/bin/env python3
"""Writes ddtrace_v03.json: the traces ddtrace sent as v0.4 msgpack, re-serialised as the
v0.3 JSON body (same array-of-traces shape). ddtrace no longer sends JSON itself, so this
keeps the real tracer's content; json.dumps escapes non-ASCII (\\u00fc), which exercises the
decoder's unescaping. The expectation is ddtrace_v04.expected.json."""
import json
import os
import sys

import msgpack

d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../CodecsTests/Fixtures/datadog")
with open(os.path.join(d, "ddtrace_v04.msgpack"), "rb") as f:
    traces = msgpack.unpackb(f.read(), raw=False)
with open(os.path.join(d, "ddtrace_v03.json"), "w") as f:
    json.dump(traces, f)
