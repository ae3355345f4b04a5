#!/usr/bin/env python3
"""Capture the exact bytes real Zipkin clients send, plus what they mean.

Produces, in Tests/CodecsTests/Fixtures/zipkin/ (or the directory given as argv[1]):
  otel-v2.json, otel-v1.json, otel-proto.bin       OpenTelemetry SDK Zipkin exporters (JSON v2,
                                                   JSON v1, proto3), POSTed to a local server
  pyzipkin-v2.json, pyzipkin-v1.json, pyzipkin-proto.bin   py_zipkin's encoders (transport handler)
  <name>.expected.json                             the spans each body must decode to

Expectations come from the ground truth the script itself set (ids, parent links, start/end
times, names, kinds, error status) and, for tags, from the library's own v2 JSON parsed with
Python's json module. The script asserts the three encodings of one library agree with that.

Requires: py-zipkin, opentelemetry-sdk, opentelemetry-exporter-zipkin-json,
opentelemetry-exporter-zipkin-proto-http (see README.md beside this file).
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

OUT = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else os.path.join(
    os.path.dirname(__file__), "..", "..", "CodecsTests", "Fixtures", "zipkin")

T0 = 1_700_000_000_000_000  # µs, a fixed start so captures are reproducible


# ---------------------------------------------------------------- local capture server
class Capture(BaseHTTPRequestHandler):
    bodies = []

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        Capture.bodies.append((self.path, self.headers.get("Content-Type"), self.rfile.read(n)))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def serve():
    srv = HTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def expectation_from_v2(body):
    """Normalise a v2 JSON body per Zipkin's rules (an independent reference decoder)."""
    out = []
    for s in json.loads(body):
        tid = s["traceId"].lower().rjust(16, "0")
        if len(tid) > 16:
            tid = tid.rjust(32, "0")
            if tid[:16] == "0" * 16:
                tid = tid[16:]
        parent = s.get("parentId")
        if parent is not None and int(parent, 16) == 0:
            parent = None
        tags = {k: v for k, v in (s.get("tags") or {}).items() if v is not None}
        out.append({
            "traceId": tid,
            "id": s["id"].lower().rjust(16, "0"),
            "parentId": parent.lower().rjust(16, "0") if parent else None,
            "name": s.get("name") or "",
            "kind": s.get("kind"),
            "timestamp": max(0, int(s.get("timestamp") or 0)),
            "duration": max(0, int(s.get("duration") or 0)),
            "localServiceName": (s.get("localEndpoint") or {}).get("serviceName") or "",
            "remoteServiceName": (s.get("remoteEndpoint") or {}).get("serviceName") or "",
            "remoteIPv4": (s.get("remoteEndpoint") or {}).get("ipv4") or "",
            "remotePort": (s.get("remoteEndpoint") or {}).get("port") or 0,
            "tags": tags,
            "error": "error" in tags,
            "debug": bool(s.get("debug")),
            "shared": bool(s.get("shared")),
            "annotations": [[a["timestamp"], a["value"]] for a in s.get("annotations") or []],
        })
    out.sort(key=lambda s: s["id"])
    return out


def expectation_from_proto(body, pb):
    msg = pb.ListOfSpans()
    msg.ParseFromString(body)
    kinds = {0: None, 1: "CLIENT", 2: "SERVER", 3: "PRODUCER", 4: "CONSUMER"}
    out = []
    for s in msg.spans:
        tid = s.trace_id.hex()
        if len(tid) == 32 and tid[:16] == "0" * 16:
            tid = tid[16:]
        parent = s.parent_id.hex() if s.parent_id and int.from_bytes(s.parent_id, "big") else None
        tags = dict(s.tags)
        out.append({
            "traceId": tid, "id": s.id.hex(), "parentId": parent, "name": s.name,
            "kind": kinds[s.kind], "timestamp": s.timestamp, "duration": s.duration,
            "localServiceName": s.local_endpoint.service_name,
            "remoteServiceName": s.remote_endpoint.service_name,
            "remoteIPv4": ".".join(str(b) for b in s.remote_endpoint.ipv4) if s.remote_endpoint.ipv4 else "",
            "remotePort": s.remote_endpoint.port,
            "tags": tags, "error": "error" in tags, "debug": s.debug, "shared": s.shared,
            "annotations": [[a.timestamp, a.value] for a in s.annotations],
        })
    out.sort(key=lambda s: s["id"])
    return out


def save_expectation(name, spans):
    write(name + ".expected.json", (json.dumps({"spans": spans}, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode())


# ---------------------------------------------------------------- OpenTelemetry SDK
def capture_otel():
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult, SimpleSpanProcessor
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.exporter.zipkin.json import ZipkinExporter as JsonExporter
    from opentelemetry.exporter.zipkin.encoder import Protocol
    from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter as ProtoExporter
    from opentelemetry.exporter.zipkin.proto.http.v2.gen import zipkin_pb2

    class Ids(IdGenerator):
        # Trace 1 is 128-bit; trace 2's high half is zero, so Zipkin shortens it to 64 bits.
        traces = iter([0x463AC35C9F6413AD48485A3953BB6124, 0x0000000000000000_00F067AA0BA902B7])
        spans = iter(range(0xA1B2C3D4E5F60001, 0xA1B2C3D4E5F60100))

        def generate_trace_id(self):
            return next(self.traces)

        def generate_span_id(self):
            return next(self.spans)

    class Recorder(SpanExporter):
        spans = []

        def export(self, spans):
            self.spans.extend(spans)
            return SpanExportResult.SUCCESS

    rec = Recorder()
    provider = TracerProvider(resource=Resource({"service.name": "checkout"}), id_generator=Ids())
    provider.add_span_processor(SimpleSpanProcessor(rec))
    tracer = provider.get_tracer("fixture")
    ns = lambda us: us * 1000
    root = tracer.start_span("GET /api/orders", kind=SpanKind.SERVER, start_time=ns(T0), attributes={
        "http.method": "GET", "http.status_code": 200, "component": "proxy",
        "guid:x-request-id": "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab",
        "note": 'say "hi"\n\ttab \\ back', "unicode": "ünïcode ✓ 😀", "sampled": True, "ratio": 0.25})
    ctx = trace.set_span_in_context(root)
    child = tracer.start_span("SELECT orders", kind=SpanKind.CLIENT, context=ctx, start_time=ns(T0 + 1500),
                              attributes={"db.system": "postgresql", "net.peer.name": "db.internal",
                                          "net.peer.ip": "10.1.2.3", "net.peer.port": 5432, "peer.service": "orders-db"})
    child.add_event("cache miss", timestamp=ns(T0 + 1700))
    child.set_status(Status(StatusCode.ERROR, "connection reset"))
    child.end(end_time=ns(T0 + 4500))
    prod = tracer.start_span("publish order", kind=SpanKind.PRODUCER, context=ctx, start_time=ns(T0 + 5000))
    prod.end(end_time=ns(T0 + 5250))
    root.end(end_time=ns(T0 + 9000))
    other = tracer.start_span("background job", kind=SpanKind.INTERNAL, start_time=ns(T0 + 20000),
                              attributes={"job": "compact"})
    other.end(end_time=ns(T0 + 20001))

    srv = serve()
    base = f"http://127.0.0.1:{srv.server_port}"
    JsonExporter(endpoint=base + "/v2", version=Protocol.V2).export(rec.spans)
    # The v1 encoder needs an explicit tag length limit (it compares None > 0 otherwise).
    JsonExporter(endpoint=base + "/v1", version=Protocol.V1, max_tag_value_length=4096).export(rec.spans)
    ProtoExporter(endpoint=base + "/proto").export(rec.spans)
    srv.shutdown()
    got = {p: b for p, _, b in Capture.bodies}
    Capture.bodies.clear()
    write("otel-v2.json", got["/v2"])
    write("otel-v1.json", got["/v1"])
    write("otel-proto.bin", got["/proto"])

    v2 = expectation_from_v2(got["/v2"])
    # Ground truth: what the script set, independent of any encoder.
    truth = {format(s.context.span_id, "016x"): s for s in rec.spans}
    for e in v2:
        s = truth[e["id"]]
        tid = format(s.context.trace_id, "032x")
        assert e["traceId"] == (tid[16:] if tid.startswith("0" * 16) else tid), e
        assert e["parentId"] == (format(s.parent.span_id, "016x") if s.parent else None), e
        assert e["name"] == s.name and e["timestamp"] == s.start_time // 1000, e
        assert e["duration"] == (s.end_time - s.start_time) // 1000, e
        assert e["error"] == (s.status.status_code == StatusCode.ERROR), e
    assert expectation_from_proto(got["/proto"], zipkin_pb2) == v2, "proto and JSON v2 disagree"
    save_expectation("otel-v2", v2)
    save_expectation("otel-proto", v2)
    # JSON v1 from this exporter carries no cs/sr annotations, so no kind; the rest matches.
    v1 = [dict(e, kind=None, remoteServiceName="", remoteIPv4="", remotePort=0) for e in v2]
    save_expectation("otel-v1", v1)


# ---------------------------------------------------------------- py_zipkin
def capture_pyzipkin():
    from py_zipkin.encoding import Encoding
    from py_zipkin.encoding._types import Kind
    from py_zipkin.zipkin import ZipkinAttrs, zipkin_span
    from py_zipkin.transport import BaseTransportHandler
    # py_zipkin's own generated module: OpenTelemetry's registers the same proto names, so
    # this capture runs in its own process (see __main__).
    from py_zipkin.encoding.protobuf import zipkin_pb2

    class Keep(BaseTransportHandler):
        def __init__(self):
            self.messages = []

        def get_max_payload_bytes(self):
            return None

        def send(self, payload):
            self.messages.append(payload)

    import py_zipkin.logging_helper
    import py_zipkin.util

    class Clock:
        # py_zipkin reads the wall clock for the root span: make it a fixed, stepping clock so
        # the three encodings describe the same spans.
        now = 0.0

        def time(self):
            Clock.now += 0.004
            return Clock.now

    bodies = {}
    for enc in (Encoding.V2_JSON, Encoding.V1_JSON, Encoding.V2_PROTO3):
        Clock.now = T0 / 1e6 - 0.004
        ids = iter(["00000000000000c%d" % i for i in range(1, 10)])
        py_zipkin.logging_helper.time = Clock()
        py_zipkin.util.generate_random_64bit_string = lambda: next(ids)
        import py_zipkin.zipkin
        py_zipkin.zipkin.generate_random_64bit_string = py_zipkin.util.generate_random_64bit_string
        t = Keep()
        attrs = ZipkinAttrs(trace_id="0000000000000000" + "7e57ab1e0000beef", span_id="00000000000000a1",
                            parent_span_id=None, flags="0", is_sampled=True)
        sec = lambda us: us / 1e6
        with zipkin_span(service_name="frontend", span_name="GET /Home", zipkin_attrs=attrs, transport_handler=t,
                         encoding=enc, kind=Kind.SERVER, host="10.0.0.5", port=8080,
                         timestamp=sec(T0), duration=sec(3000),
                         binary_annotations={"http.path": "/home", "unicode": "日本語 \u2603"}) as root:
            with zipkin_span(service_name="frontend", span_name="call backend", kind=Kind.CLIENT,
                             encoding=enc, timestamp=sec(T0 + 100), duration=sec(2500),
                             binary_annotations={"error": "", "peer": "backend"}) as c:
                c.add_sa_binary_annotation(port=9000, service_name="backend", host="10.0.0.9")
                c.add_annotation("retry", timestamp=sec(T0 + 1200))
        assert len(t.messages) == 1, t.messages
        bodies[enc] = t.messages[0] if isinstance(t.messages[0], bytes) else t.messages[0].encode()
    write("pyzipkin-v2.json", bodies[Encoding.V2_JSON])
    write("pyzipkin-v1.json", bodies[Encoding.V1_JSON])
    write("pyzipkin-proto.bin", bodies[Encoding.V2_PROTO3])
    v2 = expectation_from_v2(bodies[Encoding.V2_JSON])
    assert [e["traceId"] for e in v2] == ["7e57ab1e0000beef"] * 2, v2
    assert v2[0]["timestamp"] == T0 and v2[0]["kind"] == "SERVER", v2
    assert v2[1]["error"] and v2[1]["parentId"] == "00000000000000a1" and v2[1]["kind"] == "CLIENT", v2
    pv = expectation_from_proto(bodies[Encoding.V2_PROTO3], zipkin_pb2)
    # py_zipkin converts float seconds to µs differently per encoder (the proto path
    # truncates, JSON rounds), so each body keeps its own timestamps; the rest must agree.
    strip = lambda es: [dict(e, timestamp=0, duration=0, annotations=[a[1] for a in e["annotations"]]) for e in es]
    assert strip(pv) == strip(v2), ("proto and JSON v2 disagree", pv, v2)
    save_expectation("pyzipkin-v2", v2)
    save_expectation("pyzipkin-proto", pv)
    # py_zipkin's v1 JSON carries the same spans as cs/cr, sr/ss annotations and an `sa`
    # address. Zipkin's V1SpanConverter gives back the v2 spans; timing comes from the v1
    # body itself (span timestamp/duration when present, else the core annotations).
    v1 = []
    for e, s in zip(v2, sorted(json.loads(bodies[Encoding.V1_JSON]), key=lambda s: s["id"])):
        core = {a["value"]: a["timestamp"] for a in s["annotations"]}
        start = core.get("cs", core.get("sr"))
        end = core.get("cr", core.get("ss"))
        v1.append(dict(e, timestamp=s.get("timestamp", start), duration=s.get("duration", end - start),
                       annotations=[[a["timestamp"], a["value"]] for a in s["annotations"]
                                    if a["value"] not in ("cs", "cr", "sr", "ss")]))
    save_expectation("pyzipkin-v1", v1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    if "--pyzipkin" in sys.argv:
        capture_pyzipkin()
        sys.exit(0)
    capture_otel()
    import subprocess
    subprocess.run([sys.executable, __file__, OUT, "--pyzipkin"], check=True)
    print("wrote fixtures to", os.path.abspath(OUT))
