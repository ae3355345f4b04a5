#!/usr/bin/env python3
"""Run by capture_ddtrace.py with DD_* settings in the environment: creates known traces with
the real ddtrace library, flushes them to the agent stand-in, and writes what ddtrace reports
about each finished span (ids incl. 128-bit trace id, names, times, error) to argv[1]."""
import json
import sys

from ddtrace.trace import tracer

reported = []


def record(span):
    reported.append({
        "trace_id": span.trace_id, "span_id": span.span_id, "parent_id": span.parent_id or 0,
        "name": span.name, "service": span.service, "resource": span.resource,
        "start": span.start_ns, "duration": span.duration_ns, "error": span.error,
    })


def checkout():
    with tracer.trace("web.request", service="checkout", resource="GET /cart/{id}", span_type="web") as root:
        root.set_tag("span.kind", "server")
        root.set_tag("http.method", "GET")
        root.set_tag("http.route", "/cart/{id}")
        root.set_tag("http.url", "http://shop.local/cart/42?x=ü")
        root.set_tag("http.status_code", "200")
        root.set_metric("cart.items", 3)
        root.set_metric("cart.total", 59.95)
        with tracer.trace("postgres.query", service="checkout-db", resource="SELECT * FROM carts WHERE id = ?",
                          span_type="sql") as db:
            db.set_tag("span.kind", "client")
            db.set_tag("peer.service", "postgres")
            db.set_tag("out.host", "10.0.0.5")
            db.set_tag("network.destination.port", 5432)
            db.set_tag("db.system", "postgresql")
            spans.append(db)
        try:
            with tracer.trace("payment.charge", resource="charge") as pay:
                pay.set_tag("span.kind", "client")
                spans.append(pay)
                raise ValueError("card declined")
        except ValueError:
            pass
        spans.append(root)


def worker():
    with tracer.trace("queue.consume", service="worker", resource="orders", span_type="worker") as s:
        s.set_tag("span.kind", "consumer")
        s.set_tag("messaging.system", "kafka")
        spans.append(s)


spans = []
checkout()
worker()
tracer.flush()
tracer.shutdown()
for s in spans:
    record(s)
with open(sys.argv[1], "w") as f:
    json.dump(reported, f)
