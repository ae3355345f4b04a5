"""Run in a subprocess with DD_TRACE_AGENT_URL / DD_TRACE_API_VERSION set: emits a known trace
with the real ddtrace library, flushes it to the agent URL and prints what it sent as JSON.
EMIT_ZONE=<zone> puts `kuma.zone: <zone>` on both spans (default: `us-east` on the root only)."""
import json
import os

try:
    from ddtrace.trace import tracer
except ImportError:  # older ddtrace
    from ddtrace import tracer

spans = []
with tracer.trace("web.request", service="checkout", resource="GET /cart", span_type="web") as root:
    root.set_tag("http.method", "GET")
    zone = os.environ.get("EMIT_ZONE")
    root.set_tag("kuma.zone", zone or "us-east")
    root.set_metric("cart.items", 3)
    with tracer.trace("postgres.query", service="checkout-db", resource="SELECT * FROM cart", span_type="sql") as child:
        child.set_tag("span.kind", "client")
        child.set_tag("db.system", "postgresql")
        if zone:
            child.set_tag("kuma.zone", zone)
        try:
            raise TimeoutError("query timed out")
        except TimeoutError as e:
            child.set_exc_info(type(e), e, e.__traceback__)
    spans = [root, child]

tracer.flush()
tracer.shutdown()
print(json.dumps([{
    "trace_id": format(s.trace_id, "032x"),
    "span_id": format(s.span_id, "016x"),
    "parent_id": format(s.parent_id, "016x") if s.parent_id else None,
    "service": s.service, "name": s.name, "resource": s.resource, "type": s.span_type,
    "start_ns": s.start_ns, "duration_ns": s.duration_ns, "error": s.error,
} for s in spans]))
