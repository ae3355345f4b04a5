"""Independent check of tracerelay's Datadog v0.4 encoder.

The Swift test `TranslationZipkinDatadogTests.committedEncoderOutputsAreCurrent` keeps the
encoder's outputs committed in Tests/CodecsTests/Fixtures/datadog/ (it fails when they are
stale). Here Python's `msgpack` decodes them and checks every span against the field types the
Datadog agent's v0.4 decoder requires (pkg/proto/pbgo/trace/span.proto: uint64 ids, int64 times,
int32 error, string maps for meta, float64 maps for metrics, SpanLink's uint64 ids, string
attributes and uint32 flags with bit 31 set), plus the Zipkin translation facts, the native form of
ddtrace's v0.5 `_dd.span_links`, and one sampling priority per trace chunk.
"""
import os

import msgpack
import pytest

FIX = os.path.join(os.path.dirname(__file__), "..", "CodecsTests", "Fixtures", "datadog")
FIELDS = {
    "trace_id": int, "span_id": int, "parent_id": int, "start": int, "duration": int, "error": int,
    "name": str, "service": str, "resource": str, "type": str, "meta": dict, "metrics": dict,
    "span_links": list,
}
LINK_FIELDS = {"trace_id": int, "trace_id_high": int, "span_id": int, "attributes": dict, "tracestate": str, "flags": int}


def load(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return msgpack.unpackb(f.read(), raw=False, strict_map_key=True)


def check_agent_types(traces):
    assert isinstance(traces, list)
    for trace in traces:
        assert isinstance(trace, list) and trace
        low = trace[0]["trace_id"]
        for span in trace:
            assert set(span) <= set(FIELDS), set(span) - set(FIELDS)
            for k in ("trace_id", "span_id", "parent_id", "name", "service", "resource", "start", "duration", "error"):
                assert k in span, k
            for k, v in span.items():
                assert isinstance(v, FIELDS[k]) and not isinstance(v, bool), (k, v)
            for k in ("trace_id", "span_id", "parent_id"):
                assert 0 <= span[k] < 2**64
            assert span["trace_id"] == low, "a chunk holds one trace"
            assert span["trace_id"] != 0 and span["span_id"] != 0
            assert -2**63 <= span["start"] < 2**63 and 0 <= span["duration"] < 2**63
            assert span["error"] in (0, 1)
            assert span["name"] and span["service"] and span["resource"]
            for k, v in span.get("meta", {}).items():
                assert isinstance(k, str) and isinstance(v, str), (k, v)
            for k, v in span.get("metrics", {}).items():
                assert isinstance(k, str) and isinstance(v, float), (k, v)
            assert "_dd.span_links" not in span.get("meta", {}), "links travel in the native field"
            for link in span.get("span_links", []):
                assert set(link) <= set(LINK_FIELDS) and {"trace_id", "span_id"} <= set(link), link
                for k, v in link.items():
                    assert isinstance(v, LINK_FIELDS[k]) and not isinstance(v, bool), (k, v)
                assert 0 < link["span_id"] < 2**64 and 0 <= link["trace_id"] < 2**64
                assert "flags" not in link or (link["flags"] < 2**32 and link["flags"] & (1 << 31)), link
                assert all(isinstance(a, str) and isinstance(b, str) for a, b in link.get("attributes", {}).items())
        carriers = [s for s in trace if "_sampling_priority_v1" in s.get("metrics", {})]
        assert len(carriers) <= 1, "a trace chunk's sampling priority is written once"
        tids = [i for i, s in enumerate(trace) if "_dd.p.tid" in s.get("meta", {})]
        assert tids in ([], [0]), "_dd.p.tid only on the first span of a chunk"
        if tids:
            tid = trace[0]["meta"]["_dd.p.tid"]
            assert len(tid) == 16 and int(tid, 16) != 0


@pytest.mark.parametrize("name", ["encoder_from_zipkin.msgpack", "encoder_from_ddtrace_v04.msgpack",
                                  "encoder_from_ddtrace_links_v05.msgpack"])
def test_encoder_output_has_agent_field_types(name):
    check_agent_types(load(name))


def test_zipkin_translation():
    traces = load("encoder_from_zipkin.msgpack")
    assert [len(t) for t in traces] == [3, 1]
    root, client, db = traces[0]
    (producer,) = traces[1]
    assert root["meta"]["_dd.p.tid"] == "463ac35c9f6413ad"
    assert root["trace_id"] == 0x48485a3953bb6124 and root["parent_id"] == 0
    assert (client["parent_id"], db["parent_id"]) == (root["span_id"], client["span_id"])
    assert root["start"] == 1_700_000_000_123_456_000 and root["duration"] == 25_000_000
    assert [s["meta"]["span.kind"] for s in (root, client, db, producer)] == ["server", "client", "client", "producer"]
    assert [s["resource"] for s in (root, client, db, producer)] == ["GET /api/{id}", "POST", "SELECT 1", "publish orders"]
    assert [s["type"] for s in (root, client, db, producer)] == ["web", "http", "sql", "custom"]
    assert [s["name"] for s in (root, client, db, producer)] == ["get /api/{id}", "call backend", "query", "send"]
    assert [s["service"] for s in (root, client, db, producer)] == ["frontend", "frontend", "backend", "worker"]
    assert client["error"] == 1 and root["error"] == 0
    assert client["meta"]["error.msg"] == "connection refused" and "error" not in client["meta"]
    assert client["meta"]["peer.service"] == "backend"
    assert client["meta"]["network.destination.ip"] == "10.1.2.3"
    assert client["metrics"]["network.destination.port"] == 9000.0
    assert producer["metrics"]["_sampling_priority_v1"] == 2.0
    assert "_dd.p.tid" not in producer["meta"], "64-bit trace ids carry no _dd.p.tid"


def test_ddtrace_reencoding_keeps_what_ddtrace_sent():
    with open(os.path.join(FIX, "ddtrace_v04.msgpack"), "rb") as f:
        original = msgpack.unpackb(f.read(), raw=False)
    ours = load("encoder_from_ddtrace_v04.msgpack")
    assert len(ours) == len(original)
    for t_orig, t_ours in zip(original, ours):
        for a, b in zip(t_orig, t_ours):
            for k in ("trace_id", "span_id", "parent_id", "name", "service", "resource", "start", "duration", "error"):
                zero = "" if FIELDS[k] is str else 0  # ddtrace omits zero values
                assert a.get(k, zero) == b.get(k, zero), k
            assert a.get("type", "") == b.get("type", "")
            assert a.get("meta", {}) == b.get("meta", {})
            assert a.get("metrics", {}) == b.get("metrics", {})


def test_v05_span_links_become_what_ddtrace_writes_natively():
    """ddtrace wrote the same links as v0.5 `_dd.span_links` meta and as v0.4 `span_links`:
    our v0.4 encoding of the v0.5 body must hold ddtrace's own native links."""
    with open(os.path.join(FIX, "ddtrace_links_v04.msgpack"), "rb") as f:
        native = msgpack.unpackb(f.read(), raw=False)
    ours = load("encoder_from_ddtrace_links_v05.msgpack")
    assert [len(t) for t in ours] == [len(t) for t in native]
    for t_native, t_ours in zip(native, ours):
        for a, b in zip(t_native, t_ours):
            assert a["span_id"] == b["span_id"]
            assert a["span_links"] == b["span_links"]  # dict equality: attribute order is free
