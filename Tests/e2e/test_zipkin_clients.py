"""Real Zipkin clients (OpenTelemetry's zipkin exporters, py-zipkin) send to the relay; the
relay must decode exactly the spans they sent."""
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
        assert g.get("kind") == KIND[s.kind]
        assert g["startNanos"] == s.start_time // 1000 * 1000
        assert abs(g["durationNanos"] - (s.end_time - s.start_time)) < 1000
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
    sent = emit_otel(ZipkinExporter(version=Protocol.V1, endpoint=fresh.url + "/api/v1/spans"))
    check_same(sent, fresh.wait_for_spans(len(sent)), v1=True)


def test_otel_zipkin_proto(fresh):
    from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter
    sent = emit_otel(ZipkinExporter(endpoint=fresh.url + "/api/v2/spans"))
    check_same(sent, fresh.wait_for_spans(len(sent)))


def py_zipkin_trace(url, encoding):
    from py_zipkin.encoding import Encoding
    from py_zipkin.zipkin import zipkin_span

    content_type = "application/x-protobuf" if encoding == Encoding.V2_PROTO3 else "application/json"
    path = "/api/v1/spans" if encoding == Encoding.V1_JSON else "/api/v2/spans"
    statuses = []

    def transport(payload):
        r = requests.post(url + path, data=payload, headers={"Content-Type": content_type}, timeout=5)
        statuses.append(r.status_code)

    with zipkin_span(service_name="frontend", span_name="GET /", transport_handler=transport,
                     sample_rate=100.0, encoding=encoding, kind=None) as root:
        root.update_binary_annotations({"kuma.mesh": "default", "region": "eu-west-1"})
        with zipkin_span(service_name="frontend", span_name="call backend") as child:
            child.update_binary_annotations({"peer": "backend"})
            ids = (root.zipkin_attrs.trace_id, root.zipkin_attrs.span_id, child.zipkin_attrs.span_id)
    return ids, statuses


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
    from py_zipkin.encoding import Encoding
    check_py_zipkin(fresh, *py_zipkin_trace(fresh.url, Encoding.V2_JSON))


def test_py_zipkin_v1_json(fresh):
    from py_zipkin.encoding import Encoding
    check_py_zipkin(fresh, *py_zipkin_trace(fresh.url, Encoding.V1_JSON))


def test_py_zipkin_proto3(fresh):
    from py_zipkin.encoding import Encoding
    check_py_zipkin(fresh, *py_zipkin_trace(fresh.url, Encoding.V2_PROTO3))
