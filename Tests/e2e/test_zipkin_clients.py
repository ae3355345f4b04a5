"""Real Zipkin clients (OpenTelemetry's zipkin exporters, py-zipkin) send to the relay; the
relay must decode exactly the spans they sent."""
import json
import os
import subprocess
import sys

import requests
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

KIND = {SpanKind.CLIENT: "CLIENT", SpanKind.SERVER: "SERVER", SpanKind.PRODUCER: "PRODUCER",
        SpanKind.CONSUMER: "CONSUMER", SpanKind.INTERNAL: None}


def emit_otel(exporter):
    """Emits a known trace through `exporter` and returns the SDK's own record of it."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("e2e")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER,
                                      attributes={"http.method": "GET", "http.status_code": 200, "kuma.zone": "eu-1"}):
        with tracer.start_as_current_span("SELECT cart", kind=SpanKind.CLIENT,
                                          attributes={"db.system": "postgresql", "unicode": "naïve ☃"}) as child:
            child.set_status(Status(StatusCode.ERROR, "timeout"))
        with tracer.start_as_current_span("internal step"):
            pass
    provider.shutdown()
    return memory.get_finished_spans()


def check_same(sent, got, v1=False):
    by_id = {s["id"]: s for s in got}
    assert len(got) == len(sent), f"relay decoded {len(got)} spans, client sent {len(sent)}"
    for s in sent:
        sid = format(s.context.span_id, "016x")
        assert sid in by_id, f"span {sid} missing"
        g = by_id[sid]
        assert g["traceId"] == format(s.context.trace_id, "032x")
        if s.parent is not None:
            assert g["parentId"] == format(s.parent.span_id, "016x")
        else:
            assert "parentId" not in g
        assert g["name"] == s.name
        # OpenTelemetry's v1 encoder writes no cs/sr annotations, so v1 carries no kind.
        assert g.get("kind") == (None if v1 else KIND[s.kind])
        # Zipkin carries microseconds; the exporters round nanoseconds to the nearest one.
        assert abs(g["startNanos"] - s.start_time) <= 500 and g["startNanos"] % 1000 == 0
        assert abs(g["durationNanos"] - (s.end_time - s.start_time)) <= 1000
        assert g["localEndpoint"]["serviceName"] == "checkout"
        for k, v in s.attributes.items():
            assert g["tags"][k] == str(v), (k, g["tags"])
        assert g["error"] == (s.status.status_code == StatusCode.ERROR)


def test_otel_zipkin_json_v2(fresh):
    from opentelemetry.exporter.zipkin.encoder import Protocol
    from opentelemetry.exporter.zipkin.json import ZipkinExporter
    sent = emit_otel(ZipkinExporter(version=Protocol.V2, endpoint=fresh.url + "/api/v2/spans"))
    check_same(sent, fresh.wait_for_spans(len(sent)))


def test_otel_zipkin_json_v1(fresh):
    from opentelemetry.exporter.zipkin.encoder import Protocol
    from opentelemetry.exporter.zipkin.json import ZipkinExporter
    # The V1 encoder fails on the default max_tag_value_length=None (an exporter bug), so set one.
    sent = emit_otel(ZipkinExporter(version=Protocol.V1, endpoint=fresh.url + "/api/v1/spans", max_tag_value_length=1024))
    check_same(sent, fresh.wait_for_spans(len(sent)), v1=True)


def test_otel_zipkin_proto(fresh):
    from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter
    sent = emit_otel(ZipkinExporter(endpoint=fresh.url + "/api/v2/spans"))
    check_same(sent, fresh.wait_for_spans(len(sent)))


def py_zipkin_trace(url, encoding):
    """py_zipkin runs in its own process: its zipkin.proto and OpenTelemetry's clash in one
    protobuf descriptor pool."""
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "py_zipkin_emit.py"), url, encoding],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return (r["trace_id"], r["root_id"], r["child_id"]), r["statuses"]


def check_py_zipkin(relay, ids, statuses):
    trace_id, root_id, child_id = ids
    assert statuses and all(s == 202 for s in statuses), statuses
    got = relay.wait_for_spans(2)
    assert len(got) == 2
    by_id = {s["id"]: s for s in got}
    assert set(by_id) == {root_id, child_id}
    assert by_id[child_id]["parentId"] == root_id
    assert all(s["traceId"] == trace_id.rjust(16, "0") for s in got)
    assert by_id[root_id]["tags"]["kuma.mesh"] == "default"
    assert by_id[root_id]["tags"]["region"] == "eu-west-1"
    assert by_id[child_id]["tags"]["peer"] == "backend"
    assert by_id[root_id]["localEndpoint"]["serviceName"] == "frontend"


def test_py_zipkin_v2_json(fresh):
    check_py_zipkin(fresh, *py_zipkin_trace(fresh.url, "V2_JSON"))


def test_py_zipkin_v1_json(fresh):
    check_py_zipkin(fresh, *py_zipkin_trace(fresh.url, "V1_JSON"))


def test_py_zipkin_proto3(fresh):
    check_py_zipkin(fresh, *py_zipkin_trace(fresh.url, "V2_PROTO3"))
