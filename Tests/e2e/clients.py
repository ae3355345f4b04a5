"""Clients for the pipeline tests: real tracers (ddtrace, OpenTelemetry's Zipkin exporters,
py-zipkin) and hand-built Zipkin v2 JSON / Datadog v0.4 payloads with unique ids."""
import itertools
import json
import os
import random
import subprocess
import sys

import msgpack
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
_ids = itertools.count(1)
_rng = random.Random()


def new_trace_id():
    """A random 128-bit trace id with both halves non-zero, as 32 hex digits."""
    return format(_rng.getrandbits(64) | 1 << 63, "016x") + format(_rng.getrandbits(64) | 1, "016x")


def new_span_id():
    """A span id unique within this test run (random high bits, a counter below)."""
    return format((_rng.getrandbits(40) | 1 << 39) << 24 | (next(_ids) & 0xFFFFFF), "016x")


# ---- hand-built payloads


def zipkin_span(zone=None, region=None, service="web", tags=None, trace_id=None, parent_id=None, kind="SERVER",
                filler=0):
    """A Zipkin v2 JSON span with unique ids; `filler` adds that many random hex characters in
    a tag (poorly compressible, to fill queues)."""
    t = {"http.method": "GET", "http.path": "/cart"}
    if zone:
        t["kuma.zone"] = zone
    if region:
        t["region"] = region
    if filler:
        t["filler"] = format(_rng.getrandbits(filler * 4), f"0{filler}x")
    t.update(tags or {})
    s = {"traceId": trace_id or new_trace_id(), "id": new_span_id(), "kind": kind, "name": "get /cart",
         "timestamp": 1_700_000_000_000_000 + _rng.randrange(10**9), "duration": 1 + _rng.randrange(10**6),
         "localEndpoint": {"serviceName": service}, "tags": t}
    if parent_id:
        s["parentId"] = parent_id
    return s


def post_zipkin(url, spans, headers=None, timeout=10):
    """POSTs spans as Zipkin v2 JSON to a relay's base URL; the response."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return requests.post(url + "/api/v2/spans", data=json.dumps(spans), headers=h, timeout=timeout)


def dd_span(zone=None, region=None, service="cart", trace_id=None, parent_id=0, meta=None):
    """A Datadog v0.4 span (ints for ids and times) with a unique span id."""
    m = {"http.method": "POST", "span.kind": "server"}
    if zone:
        m["kuma.zone"] = zone
    if region:
        m["region"] = region
    m.update(meta or {})
    return {"trace_id": trace_id or int(new_trace_id()[16:], 16), "span_id": int(new_span_id(), 16),
            "parent_id": parent_id, "name": "http.request", "service": service, "resource": "POST /cart",
            "type": "web", "start": 1_700_000_000_000_000_000 + _rng.randrange(10**12),
            "duration": 1000 + _rng.randrange(10**9), "error": 0, "meta": m, "metrics": {"_dd.top_level": 1.0}}


def post_datadog(url, traces, headers=None, timeout=10):
    """PUTs traces (a list of lists of span dicts) as Datadog v0.4 msgpack, like a tracer."""
    h = {"Content-Type": "application/msgpack", "X-Datadog-Trace-Count": str(len(traces)),
         "Datadog-Meta-Lang": "python", "Datadog-Meta-Tracer-Version": "e2e"}
    h.update(headers or {})
    return requests.put(url + "/v0.4/traces", data=msgpack.packb(traces), headers=h, timeout=timeout)


def dd_hex(span_id):
    return format(span_id, "016x")


# ---- real tracers


def ddtrace_emit(agent_url, api_version="v0.4", zone=None):
    """Runs ddtrace (in its own process) against agent_url; what ddtrace says it sent."""
    env = dict(os.environ, DD_TRACE_AGENT_URL=agent_url, DD_TRACE_API_VERSION=api_version,
               DD_INSTRUMENTATION_TELEMETRY_ENABLED="false", DD_REMOTE_CONFIGURATION_ENABLED="false",
               DD_TRACE_STARTUP_LOGS="false", DD_TRACE_128_BIT_TRACEID_GENERATION_ENABLED="true")
    if zone:
        env["EMIT_ZONE"] = zone
    out = subprocess.run([sys.executable, os.path.join(HERE, "ddtrace_emit.py")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def py_zipkin_emit(url, encoding):
    """py_zipkin (own process: its zipkin.proto clashes with OpenTelemetry's) → url; returns
    {trace_id, root_id, child_id, statuses}. The root carries region eu-west-1, the child no zone."""
    out = subprocess.run([sys.executable, os.path.join(HERE, "py_zipkin_emit.py"), url, encoding],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def otel_emit(exporter, zone):
    """Emits a three-span trace (server → client with error, internal) through `exporter`, every
    span tagged kuma.zone=zone; returns the SDK's own record (ReadableSpans)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    class Zone(SpanProcessor):
        def on_start(self, span, parent_context=None):
            span.set_attribute("kuma.zone", zone)

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(Zone())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("e2e")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER,
                                      attributes={"http.method": "GET", "http.status_code": 200}):
        with tracer.start_as_current_span("SELECT cart", kind=SpanKind.CLIENT,
                                          attributes={"db.system": "postgresql", "unicode": "naïve ☃"}) as child:
            child.set_status(Status(StatusCode.ERROR, "timeout"))
        with tracer.start_as_current_span("internal step"):
            pass
    provider.shutdown()
    return memory.get_finished_spans()
