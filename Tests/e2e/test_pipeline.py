"""The pipeline end to end (issue 8): real clients → tracerelay → real backends over loopback.

Backends: a Zipkin collector (sinks.ZipkinSink) pinned to region eu-west-1 and Datadog's own
APM test agent (ddapm-test-agent, every trace check on) pinned to us-east-1, routed by zone
tags with TrafficTraces as in examples/two-regions.yaml. Every span must reach the backend its
tags select, in that backend's format, field by field, once; a backend that is down, slow,
refusing or restarted must not lose accepted spans nor hold up the other backend.

E2E_OUTAGE_SECONDS sets the outage length (default 30 s, as the issue says).
"""
import collections
import json
import os
import subprocess
import threading
import time

import pytest
import requests

from clients import (dd_hex, dd_span, ddtrace_emit, new_trace_id, otel_emit, post_datadog, post_zipkin,
                     py_zipkin_emit, zipkin_span)
from conftest import Relay
from sinks import ZipkinSink, free_port

EU, US = "eu-west-zone-1", "us-east-zone-1"
OUTAGE = float(os.environ.get("E2E_OUTAGE_SECONDS", "30"))
FAST_EXPORT = {"batchDelay": "50ms", "maxBackoff": "1s", "timeout": "10s"}


# ---------------------------------------------------------------------------------------------
# Config and small helpers


def yaml_map(d, indent):
    """A dict of scalars / dicts as block YAML, every line indented by `indent` spaces."""
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(" " * indent + f"{k}:")
            out.append(yaml_map(v, indent + 2))
        else:
            out.append(" " * indent + f"{k}: {v}")
    return "\n".join(out)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def two_region_config(tmp_path, sink, agent_port, eu_export=None, us_export=None, spill=None, name="relay.yaml",
                      api_version="httpJson"):
    """eu zones → eu-zipkin (the sink, region eu-west-1); us zones → us-datadog (the agent, region
    us-east-1); anything else → the Mesh default eu-zipkin. us spans have no fallback."""
    spill_doc = ("spill:\n" + yaml_map(spill, 2)) if spill else ""
    return write(tmp_path, name, f"""\
type: Relay
region: eu-west-1
zoneRegions:
  {EU}: eu-west-1
  {US}: us-east-1
{spill_doc}
---
type: Mesh
name: default
tracing:
  defaultBackend: eu-zipkin
  backends:
    - name: eu-zipkin
      type: zipkin
      region: eu-west-1
      sampling: 100.0
      export:
{yaml_map(eu_export or FAST_EXPORT, 8)}
      conf:
        url: {sink.url}
        traceId128bit: true
        apiVersion: {api_version}
    - name: us-datadog
      type: datadog
      region: us-east-1
      sampling: 100.0
      export:
{yaml_map(us_export or FAST_EXPORT, 8)}
      conf:
        address: 127.0.0.1
        port: {agent_port}
---
type: TrafficTrace
name: us-traffic
mesh: default
selectors:
  - match:
      kuma.io/service: '*'
      kuma.io/zone: {US}
conf:
  backend: us-datadog
---
type: TrafficTrace
name: eu-traffic
mesh: default
selectors:
  - match:
      kuma.io/service: '*'
      kuma.io/zone: {EU}
conf:
  backend: eu-zipkin
""")


def single_backend_config(tmp_path, backend_yaml, name="single.yaml"):
    """A Mesh whose only (default) backend is `backend_yaml` (a list item, 4-space indented);
    no region anywhere, so residency is off."""
    return write(tmp_path, name, f"""\
type: Mesh
name: default
tracing:
  defaultBackend: only
  backends:
{backend_yaml}
""")


def wait_until(fn, timeout=15, interval=0.1):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            return v
        time.sleep(interval)


def backends_status(relay):
    st = relay.status()
    assert "backends" in st, f"/status has no 'backends' (pipeline not there yet?): {st}"
    return st["backends"]


def backend_status(relay, name):
    b = backends_status(relay)
    assert name in b, f"/status backends has no {name!r}: {b}"
    return b[name]


def assert_once(counts, ids, where):
    """Every id in `ids` arrived exactly once; nothing else arrived."""
    missing = sorted(set(ids) - set(counts))
    twice = sorted(k for k, n in counts.items() if n > 1)
    extra = sorted(set(counts) - set(ids))
    assert not missing and not twice and not extra, \
        f"{where}: {len(missing)} missing {missing[:5]}, {len(twice)} duplicated {twice[:5]}, {len(extra)} unexpected {extra[:5]}"


def sink_id_counts(sink):
    return collections.Counter(s["id"] for s in sink.delivered_spans())


def relay_context(relay):
    return f"\n--- relay log (tail) ---\n{relay.tail()}"


@pytest.fixture
def relays():
    """Relays started by a test (append them); stopped at the end, each must exit 0."""
    started = []
    yield started
    codes = [(r.cmd, r.stop()) for r in started]
    bad = [c for c in codes if c[1] != 0]
    assert not bad, f"relay exited non-zero: {bad}"


# ---------------------------------------------------------------------------------------------
# Every real client, both backends, field by field


def test_real_clients_reach_the_backend_their_tags_select(tmp_path, zipkin_sink, dd_agent, relays):
    from opentelemetry.exporter.zipkin.encoder import Protocol
    from opentelemetry.exporter.zipkin.json import ZipkinExporter as ZipkinJSONExporter
    from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter as ZipkinProtoExporter

    relay = Relay(config=two_region_config(tmp_path, zipkin_sink, dd_agent.port))
    relays.append(relay)

    dd_us = ddtrace_emit(relay.url, "v0.4", zone=US)                      # Datadog → Datadog
    dd_eu = ddtrace_emit(relay.url, "v0.5", zone=EU)                      # Datadog v0.5 → Zipkin
    otel_eu = otel_emit(ZipkinJSONExporter(version=Protocol.V2, endpoint=relay.url + "/api/v2/spans"), EU)
    otel_us = otel_emit(ZipkinProtoExporter(endpoint=relay.url + "/api/v2/spans"), US)  # Zipkin proto → Datadog
    pz = py_zipkin_emit(relay.url, "V2_PROTO3")                           # root: region eu-west-1; child: no zone
    assert pz["statuses"] and set(pz["statuses"]) == {202}
    curl_span = zipkin_span(zone=US, service="curl-client")
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
                          "--data-binary", json.dumps([curl_span]), relay.url + "/api/v2/spans"],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "202", out.stdout + out.stderr
    dd_root = dd_span(zone=EU, service="dd-client")
    dd_child = dd_span(zone=EU, service="dd-client", trace_id=dd_root["trace_id"], parent_id=dd_root["span_id"],
                       meta={"span.kind": "client", "peer.service": "db"})
    r = post_datadog(relay.url, [[dd_root, dd_child]])
    assert r.status_code == 200, r.text
    # A us span (explicit region tag) whose policy picks the eu default: refused, sent nowhere.
    refused = zipkin_span(region="us-east-1", service="refused")
    assert post_zipkin(relay.url, [refused]).status_code == 202

    eu_ids = ({s["span_id"] for s in dd_eu} | {format(s.context.span_id, "016x") for s in otel_eu}
              | {pz["root_id"], pz["child_id"]} | {dd_hex(dd_root["span_id"]), dd_hex(dd_child["span_id"])})
    us_ids = {s["span_id"] for s in dd_us} | {format(s.context.span_id, "016x") for s in otel_us} | {curl_span["id"]}
    assert len(eu_ids) == 9 and len(us_ids) == 6
    missing_eu = zipkin_sink.wait_for_ids(eu_ids, timeout=20)
    missing_us = dd_agent.wait_for_ids(us_ids, timeout=20)
    assert not missing_eu and not missing_us, f"missing eu {missing_eu}, us {missing_us}" + relay_context(relay)
    time.sleep(1.0)  # anything extra (a duplicate, a refused span) would arrive by now

    # Exactly once, each at its own backend only.
    assert_once(sink_id_counts(zipkin_sink), eu_ids, "eu Zipkin sink")
    assert_once(dd_agent.span_counts(), us_ids, "us Datadog agent")
    assert zipkin_sink.errors() == []
    for s in zipkin_sink.delivered_spans():
        assert s.get("tags", {}).get("kuma.zone") != US and s.get("tags", {}).get("region") != "us-east-1", s
    for s in dd_agent.spans():
        assert s.get("meta", {}).get("kuma.zone") != EU and s.get("meta", {}).get("region") != "eu-west-1", s
    dd_agent.assert_checks_passed()
    for req in zipkin_sink.requests:
        assert (req.method, req.path, req.version) == ("POST", "/api/v2/spans", "HTTP/1.1")
        assert req.headers.get("content-type", "").startswith("application/json")
    for req in dd_agent.trace_requests():
        headers = {k.lower(): v for k, v in req["headers"].items()}
        assert req["url"].endswith("/v0.4/traces") and req["method"] in ("PUT", "POST")
        assert headers.get("content-type", "").startswith("application/msgpack"), headers

    zs = {s["id"]: s for s in zipkin_sink.delivered_spans()}
    ds = {dd_hex(s["span_id"]): s for s in dd_agent.spans()}
    tids = collections.defaultdict(set)  # Datadog: the high trace id half travels as _dd.p.tid
    for s in dd_agent.spans():
        if "_dd.p.tid" in s.get("meta", {}):
            tids[s["trace_id"]].add(s["meta"]["_dd.p.tid"])

    def check_dd_trace_id(g, trace_hex):
        assert dd_hex(g["trace_id"]) == trace_hex[-16:]
        if len(trace_hex) == 32 and int(trace_hex[:16], 16):
            assert tids[g["trace_id"]] == {trace_hex[:16]}, "one _dd.p.tid per chunk, the high half"

    # ddtrace v0.4 → Datadog agent: what ddtrace sent, unchanged.
    for s in dd_us:
        g = ds[s["span_id"]]
        check_dd_trace_id(g, s["trace_id"])
        assert (g.get("parent_id") or None) == (int(s["parent_id"], 16) if s["parent_id"] else None)
        assert (g["service"], g["name"], g["resource"], g["type"]) == (s["service"], s["name"], s["resource"], s["type"])
        assert (g["start"], g["duration"], g.get("error", 0)) == (s["start_ns"], s["duration_ns"], s["error"])
        assert g["meta"]["kuma.zone"] == US
    root, child = ds[dd_us[0]["span_id"]], ds[dd_us[1]["span_id"]]
    assert root["meta"]["http.method"] == "GET" and root["metrics"]["cart.items"] == 3
    assert child["meta"]["db.system"] == "postgresql" and child["meta"]["span.kind"] == "client"
    assert "query timed out" in child["meta"].get("error.message", child["meta"].get("error.msg", ""))

    # ddtrace v0.5 → Zipkin sink (128-bit ids kept: traceId128bit true).
    for s in dd_eu:
        g = zs[s["span_id"]]
        assert g["traceId"] == s["trace_id"]
        assert g.get("parentId") == s["parent_id"]
        assert g["name"] == s["name"] and g["localEndpoint"]["serviceName"] == s["service"]
        assert g["timestamp"] == s["start_ns"] // 1000
        assert g["duration"] == max(1, s["duration_ns"] // 1000)
        assert g["tags"]["kuma.zone"] == EU
    root, child = zs[dd_eu[0]["span_id"]], zs[dd_eu[1]["span_id"]]
    assert root["tags"]["http.method"] == "GET" and root["tags"]["cart.items"] == "3"
    assert child.get("kind") == "CLIENT" and child["tags"]["db.system"] == "postgresql"
    assert "query timed out" in child["tags"].get("error.message", child["tags"].get("error.msg", ""))

    # OpenTelemetry Zipkin JSON → Zipkin sink.
    for s in otel_eu:
        g = zs[format(s.context.span_id, "016x")]
        assert g["traceId"] == format(s.context.trace_id, "032x")
        assert g.get("parentId") == (format(s.parent.span_id, "016x") if s.parent else None)
        assert g["name"] == s.name and g["localEndpoint"]["serviceName"] == "checkout"
        assert abs(g["timestamp"] * 1000 - s.start_time) <= 500
        assert abs(g["duration"] * 1000 - (s.end_time - s.start_time)) <= 1000
        for k, v in dict(s.attributes).items():
            assert g["tags"][k] == str(v), (k, g["tags"])
        assert ("error" in g["tags"]) == (s.status.status_code.name == "ERROR")

    # OpenTelemetry Zipkin proto → Datadog agent (translated).
    kinds = {"SERVER": "server", "CLIENT": "client", "INTERNAL": None}
    for s in otel_us:
        g = ds[format(s.context.span_id, "016x")]
        check_dd_trace_id(g, format(s.context.trace_id, "032x"))
        assert (g.get("parent_id") or 0) == (s.parent.span_id if s.parent else 0)
        assert g["name"] == s.name and g["service"] == "checkout"
        assert abs(g["start"] - s.start_time) <= 500 and g["start"] % 1000 == 0
        assert abs(g["duration"] - (s.end_time - s.start_time)) <= 1000
        assert g["meta"].get("span.kind") in ((kinds[s.kind.name],) if kinds[s.kind.name] else (None, "internal"))
        for k, v in dict(s.attributes).items():
            assert g["meta"][k] == str(v), (k, g["meta"])
        if s.status.status_code.name == "ERROR":
            assert g.get("error") == 1 and g["meta"].get("error.msg") == "timeout"
        else:
            assert g.get("error", 0) == 0

    # py-zipkin proto3 → Zipkin sink (64-bit trace id).
    root, child = zs[pz["root_id"]], zs[pz["child_id"]]
    assert root["traceId"] == child["traceId"] == pz["trace_id"].rjust(16, "0")
    assert child["parentId"] == pz["root_id"] and "parentId" not in root
    assert root["tags"]["kuma.mesh"] == "default" and root["tags"]["region"] == "eu-west-1"
    assert child["tags"]["peer"] == "backend" and root["localEndpoint"]["serviceName"] == "frontend"

    # curl's Zipkin JSON → Datadog agent.
    g = ds[curl_span["id"]]
    check_dd_trace_id(g, curl_span["traceId"])
    assert g["service"] == "curl-client" and g["name"] == curl_span["name"]
    assert g["start"] == curl_span["timestamp"] * 1000 and g["duration"] == curl_span["duration"] * 1000
    assert g["meta"]["span.kind"] == "server"
    for k, v in curl_span["tags"].items():
        assert g["meta"][k] == v

    # Datadog msgpack from a plain client → Zipkin sink.
    for s in (dd_root, dd_child):
        g = zs[dd_hex(s["span_id"])]
        assert g["traceId"] == dd_hex(s["trace_id"])
        assert g.get("parentId") == (dd_hex(s["parent_id"]) if s["parent_id"] else None)
        assert g["name"] == s["name"] and g["localEndpoint"]["serviceName"] == s["service"]
        assert g["timestamp"] == s["start"] // 1000 and g["duration"] == s["duration"] // 1000
        assert g["kind"] == s["meta"]["span.kind"].upper()
        for k, v in s["meta"].items():
            if k != "span.kind":
                assert g["tags"][k] == v, (k, g["tags"])
    assert zs[dd_hex(dd_child["span_id"])]["remoteEndpoint"]["serviceName"] == "db"

    # The relay's own account.
    st = relay.status()
    assert sum(st["routing"]["refused"].values()) == 1, st["routing"]
    b = backends_status(relay)
    assert (b["eu-zipkin"]["sent_spans"], b["us-datadog"]["sent_spans"]) == (9, 6), b
    for name in ("eu-zipkin", "us-datadog"):
        assert b[name]["dropped_spans"] == 0 and b[name]["failed_requests"] == 0 and b[name]["up"] is True, b


def test_datadog_clients_get_the_backends_rate_by_service(tmp_path, zipkin_sink, dd_agent, relays):
    rates = {"service:cart,env:": 0.5, "service:checkout,env:prod": 0.25}
    dd_agent.start_session(rate_by_service=rates)
    relay = Relay(config=two_region_config(tmp_path, zipkin_sink, dd_agent.port))
    relays.append(relay)
    first = dd_span(zone=US)
    assert post_datadog(relay.url, [[first]]).status_code == 200
    assert not dd_agent.wait_for_ids({dd_hex(first["span_id"])}), relay_context(relay)
    got = {}

    def answered():
        nonlocal got
        r = post_datadog(relay.url, [[dd_span(zone=US)]])
        assert r.status_code == 200
        got = r.json().get("rate_by_service", {})
        return all(got.get(k) == v for k, v in rates.items())
    assert wait_until(answered, timeout=10, interval=0.3), f"relay answered rate_by_service {got}, agent gave {rates}"


# ---------------------------------------------------------------------------------------------
# A backend down, slow, restarted, refusing


class Sender(threading.Thread):
    """Posts `per` eu and `per` us spans every `interval` seconds, alternating Zipkin JSON (eu
    and us spans mixed in one request) and Datadog v0.4 msgpack (one eu and one us trace)."""

    def __init__(self, url, per=5, interval=0.1):
        super().__init__(daemon=True)
        self.url, self.per, self.interval = url, per, interval
        self.halt = threading.Event()
        self.eu, self.us = [], []          # (sent at, span id)
        self.answers = []                  # (status, seconds)
        self.errors = []

    def run(self):
        i = 0
        while not self.halt.is_set():
            t0 = time.time()
            try:
                if i % 2 == 0:
                    eu = [zipkin_span(zone=EU) for _ in range(self.per)]
                    us = [zipkin_span(zone=US) for _ in range(self.per)]
                    r = post_zipkin(self.url, eu + us)
                    eu_ids, us_ids = [s["id"] for s in eu], [s["id"] for s in us]
                else:
                    tid_eu, tid_us = int(new_trace_id()[16:], 16), int(new_trace_id()[16:], 16)
                    eu = [dd_span(zone=EU, trace_id=tid_eu) for _ in range(self.per)]
                    us = [dd_span(zone=US, trace_id=tid_us) for _ in range(self.per)]
                    r = post_datadog(self.url, [eu, us])
                    eu_ids, us_ids = [dd_hex(s["span_id"]) for s in eu], [dd_hex(s["span_id"]) for s in us]
                self.answers.append((r.status_code, time.time() - t0))
                if r.status_code in (200, 202):
                    self.eu += [(t0, x) for x in eu_ids]
                    self.us += [(t0, x) for x in us_ids]
            except requests.RequestException as e:
                self.errors.append(repr(e))
            i += 1
            self.halt.wait(max(0.0, self.interval - (time.time() - t0)))

    def stop(self):
        self.halt.set()
        self.join(30)


def test_outage_spills_then_drains_and_the_other_backend_keeps_flowing(tmp_path, zipkin_sink, dd_agent, relays):
    export = dict(FAST_EXPORT, downAfter=3)
    relay = Relay(config=two_region_config(tmp_path, zipkin_sink, dd_agent.port, eu_export=export))
    relays.append(relay)
    sender = Sender(relay.url)
    sender.start()
    try:
        time.sleep(3)
        zipkin_sink.stop()
        outage_start = time.time()
        samples, late_checks = [], []
        while time.time() - outage_start < OUTAGE:
            time.sleep(0.5)
            samples.append(backend_status(relay, "eu-zipkin"))
            elapsed = time.time() - outage_start
            if (not late_checks and elapsed > OUTAGE / 2) or (len(late_checks) == 1 and elapsed > OUTAGE - 1.5):
                # us spans sent more than 3 s ago are at the agent, outage or not.
                due = {x for t, x in list(sender.us) if t < time.time() - 3}
                late_checks.append(len(due & set(dd_agent.span_counts())) - len(due))
        zipkin_sink.start()
        time.sleep(2)
    finally:
        sender.stop()
    assert not sender.errors, sender.errors[:3]
    assert {s for s, _ in sender.answers} <= {200, 202}, collections.Counter(s for s, _ in sender.answers)
    assert max(t for _, t in sender.answers) < 2.0, "ingest must not wait for a backend that is down"
    assert late_checks == [0, 0], f"us spans late during the eu outage (missing counts {late_checks})"
    assert any(s["up"] is False for s in samples), "eu-zipkin never marked down during the outage"
    assert max(s["queue"]["disk_bytes"] for s in samples) > 0, "the eu queue never spilled to disk"

    eu_ids, us_ids = [x for _, x in sender.eu], [x for _, x in sender.us]
    missing = zipkin_sink.wait_for_ids(eu_ids, timeout=40)
    assert not missing, f"{len(missing)} of {len(eu_ids)} eu spans never delivered" + relay_context(relay)
    assert not dd_agent.wait_for_ids(us_ids, timeout=20)
    time.sleep(1)
    assert_once(sink_id_counts(zipkin_sink), eu_ids, "eu after the outage")
    assert_once(dd_agent.span_counts(), us_ids, "us")
    dd_agent.assert_checks_passed()
    eu = wait_until(lambda: (lambda b: b if b["queue"]["records"] == 0 and b["up"] else None)(
        backend_status(relay, "eu-zipkin")), timeout=10)
    assert eu and eu["sent_spans"] == len(eu_ids) and eu["dropped_spans"] == 0, eu


def test_relay_restart_while_spilled_replays_everything(tmp_path, dd_agent, relays):
    sink = ZipkinSink(start=False)  # down from the start
    spill = tmp_path / "spill"
    cfg = two_region_config(tmp_path, sink, dd_agent.port, eu_export=dict(FAST_EXPORT, downAfter=2))
    relay = Relay(config=cfg, spill_dir=str(spill), args=["--grace", "2"])
    eu_ids, us_ids = [], []
    try:
        for _ in range(6):
            eu = [zipkin_span(zone=EU, filler=64) for _ in range(50)]
            us = [zipkin_span(zone=US) for _ in range(10)]
            assert post_zipkin(relay.url, eu + us).status_code == 202
            eu_ids += [s["id"] for s in eu]
            us_ids += [s["id"] for s in us]
        assert not dd_agent.wait_for_ids(us_ids, timeout=15), relay_context(relay)
        wait_until(lambda: backend_status(relay, "eu-zipkin")["up"] is False, timeout=10)
    finally:
        code = relay.stop()
    assert code == 0
    files = [p for p in spill.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert files, f"nothing spilled under {spill} at shutdown"

    relay2 = Relay(config=cfg, spill_dir=str(spill), port=relay.port)
    relays.append(relay2)
    sink.start()
    try:
        missing = sink.wait_for_ids(eu_ids, timeout=30)
        assert not missing, f"{len(missing)} of {len(eu_ids)} spilled spans not replayed" + relay_context(relay2)
        time.sleep(1)
        assert_once(sink_id_counts(sink), eu_ids, "eu after the relay restart")
        assert_once(dd_agent.span_counts(), us_ids, "us (delivered before the restart, not again)")
        assert wait_until(lambda: backend_status(relay2, "eu-zipkin")["queue"]["records"] == 0, timeout=10)
    finally:
        sink.stop()


def test_slow_backend_does_not_slow_the_other(tmp_path, zipkin_sink, dd_agent, relays):
    relay = Relay(config=two_region_config(tmp_path, zipkin_sink, dd_agent.port))
    relays.append(relay)

    def phase():
        """Posts 30 requests of 40 eu + 40 us spans back to back; the us delivery rate (spans/s
        from the first post until the last us span is at the agent) and the slowest answer."""
        eu_ids, us_ids, slowest = [], [], 0.0
        t0 = time.time()
        for _ in range(30):
            eu = [zipkin_span(zone=EU) for _ in range(40)]
            us = [zipkin_span(zone=US) for _ in range(40)]
            t = time.time()
            assert post_zipkin(relay.url, eu + us).status_code == 202
            slowest = max(slowest, time.time() - t)
            eu_ids += [s["id"] for s in eu]
            us_ids += [s["id"] for s in us]
        assert not dd_agent.wait_for_ids(us_ids, timeout=30), relay_context(relay)
        return time.time() - t0, slowest, eu_ids, us_ids

    fast_time, fast_slowest, eu1, us1 = phase()
    zipkin_sink.delay = 2.0
    slow_time, slow_slowest, eu2, us2 = phase()
    # The phases take a fraction of a second, so a rate ratio mostly measures polling; what
    # matters is that us delivery never waits for eu's 2 s answers.
    assert slow_time < fast_time + 1.0, f"us spans took {slow_time:.2f}s with eu slow vs {fast_time:.2f}s"
    assert slow_slowest < max(1.0, 3 * fast_slowest), f"ingest answers slowed: {slow_slowest:.2f}s vs {fast_slowest:.2f}s"
    assert not zipkin_sink.wait_for_ids(eu1 + eu2, timeout=30), "the slow backend must still get everything"
    time.sleep(1)
    assert_once(sink_id_counts(zipkin_sink), eu1 + eu2, "slow eu sink")
    assert_once(dd_agent.span_counts(), us1 + us2, "us")
    assert max(r.answered_at - r.received_at for r in zipkin_sink.requests if r.answered_at) >= 2.0


def test_relay_chain_keeps_pins_and_exact_counts(tmp_path, zipkin_sink, dd_agent, relays):
    central_port, eu_port, us_port = free_port(), free_port(), free_port()
    central_cfg = write(tmp_path, "central.yaml", f"""\
type: Relay
region: eu-west-1
trustUpstreamTags: true
listeners:
  - name: from-collectors
    address: 127.0.0.1:{central_port}
zoneRegions:
  {EU}: eu-west-1
  {US}: us-east-1
---
type: Mesh
name: default
tracing:
  defaultBackend: eu-zipkin
  backends:
    - name: eu-zipkin
      type: zipkin
      region: eu-west-1
      export:
{yaml_map(FAST_EXPORT, 8)}
      conf:
        url: {zipkin_sink.url}
        traceId128bit: true
    - name: us-datadog
      type: datadog
      region: us-east-1
      export:
{yaml_map(FAST_EXPORT, 8)}
      conf:
        address: 127.0.0.1
        port: {dd_agent.port}
---
type: TrafficTrace
name: us-traffic
mesh: default
selectors:
  - match:
      kuma.io/service: '*'
      kuma.io/zone: {US}
conf:
  backend: us-datadog
""")

    def regional(name, port, zone, region):
        return write(tmp_path, f"{name}.yaml", f"""\
type: Relay
region: {region}
listeners:
  - name: ingest
    address: 127.0.0.1:{port}
    tags:
      kuma.io/zone: {zone}
      region: {region}
zoneRegions:
  {zone}: {region}
backends:
  - name: central
    type: tracerelay
    region: {region}
    export:
{yaml_map(FAST_EXPORT, 6)}
    conf:
      url: http://127.0.0.1:{central_port}/api/v2/spans
---
type: Mesh
name: default
tracing:
  defaultBackend: central
""")

    central = Relay(config=central_cfg, port=central_port, listen=False)
    relays.append(central)
    eu_relay = Relay(config=regional("eu", eu_port, EU, "eu-west-1"), port=eu_port, listen=False)
    relays.append(eu_relay)
    us_relay = Relay(config=regional("us", us_port, US, "us-east-1"), port=us_port, listen=False)
    relays.append(us_relay)

    # The listener's tags win over the span's own: a span claiming a us zone sent to the eu
    # collector is an eu span, and the other way round.
    eu_spans = ([zipkin_span() for _ in range(100)] + [zipkin_span(zone=US) for _ in range(50)]
                + [zipkin_span(region="us-east-1") for _ in range(50)])
    us_spans = [zipkin_span() for _ in range(100)] + [zipkin_span(zone=EU) for _ in range(50)]
    us_dd = [dd_span(zone=EU) for _ in range(50)]
    for i in range(0, len(eu_spans), 50):
        assert post_zipkin(eu_relay.url, eu_spans[i:i + 50]).status_code == 202
    for i in range(0, len(us_spans), 50):
        assert post_zipkin(us_relay.url, us_spans[i:i + 50]).status_code == 202
    assert post_datadog(us_relay.url, [[s] for s in us_dd]).status_code == 200
    eu_ids = [s["id"] for s in eu_spans]
    us_ids = [s["id"] for s in us_spans] + [dd_hex(s["span_id"]) for s in us_dd]

    assert not zipkin_sink.wait_for_ids(eu_ids, timeout=20), relay_context(eu_relay) + relay_context(central)
    assert not dd_agent.wait_for_ids(us_ids, timeout=20), relay_context(us_relay) + relay_context(central)
    time.sleep(1)
    assert_once(sink_id_counts(zipkin_sink), eu_ids, "eu sink via the chain")
    assert_once(dd_agent.span_counts(), us_ids, "us agent via the chain")
    dd_agent.assert_checks_passed()
    routing = central.status()["routing"]
    assert routing["routed"] == {"eu-zipkin": 200, "us-datadog": 200}, routing
    assert sum(routing["refused"].values()) == 0, routing
    for r, n in ((eu_relay, 200), (us_relay, 200)):
        assert backend_status(r, "central")["sent_spans"] == n


def test_full_queue_answers_429_with_retry_after_and_loses_nothing_accepted(tmp_path, dd_agent, relays):
    sink = ZipkinSink(start=False)
    spill = {"memoryBytes": "64KiB", "maxDiskBytes": "256KiB", "durability": "spill", "whenFull": "reject"}
    relay = Relay(config=two_region_config(tmp_path, sink, dd_agent.port, spill=spill,
                                           eu_export=dict(FAST_EXPORT, downAfter=1)))
    relays.append(relay)
    try:
        accepted, refused = [], None
        deadline = time.time() + 40
        while refused is None and time.time() < deadline:
            spans = [zipkin_span(zone=EU, filler=800) for _ in range(25)]
            r = post_zipkin(relay.url, spans)
            if r.status_code == 202:
                accepted += [s["id"] for s in spans]
            elif r.status_code == 429:
                refused = (r, spans)
            else:
                pytest.fail(f"unexpected answer {r.status_code}: {r.text}")
        assert refused, f"no 429 after {len(accepted)} accepted spans with tiny caps" + relay_context(relay)
        r, refused_spans = refused
        ra = r.headers.get("Retry-After", "")
        assert ra.isdigit() and int(ra) >= 1, f"429 without a usable Retry-After: {dict(r.headers)}"

        # Datadog: 429 only for tracers that ask for real statuses, else 200 (and dropped). The
        # queue may still take smaller payloads after the Zipkin refusal (the disk cap counts
        # compressed bytes, written in the background): send until it refuses, bounded in time.
        real = []
        dd_deadline = time.time() + 30
        while time.time() < dd_deadline:
            trace = [dd_span(zone=EU, meta={"filler": "x" * 800}) for _ in range(25)]
            real.append(post_datadog(relay.url, [trace], headers={"Datadog-Send-Real-Http-Status": "yes"}).status_code)
            if real[-1] == 200:
                accepted += [dd_hex(s["span_id"]) for s in trace]
            elif real[-1] == 429:
                break
        assert real[-1] == 429 and set(real) <= {200, 429}, f"Datadog answers with the real-status header: {real}"
        assert post_datadog(relay.url, [[dd_span(zone=EU)]]).status_code == 200

        sink.start()
        missing = sink.wait_for_ids(accepted, timeout=40)
        assert not missing, f"{len(missing)} of {len(accepted)} accepted spans lost" + relay_context(relay)
        time.sleep(1)
        counts = sink_id_counts(sink)
        assert not [k for k in accepted if counts[k] != 1], "accepted spans delivered more than once"
        # Once drained, the client's retry of the refused request is taken and delivered.
        assert wait_until(lambda: post_zipkin(relay.url, refused_spans).status_code == 202, timeout=20,
                          interval=max(1, int(ra)))
        assert not sink.wait_for_ids([s["id"] for s in refused_spans], timeout=15)
    finally:
        sink.stop()


def test_permanent_400_drops_and_counts_without_looping(tmp_path, zipkin_sink, dd_agent, relays):
    zipkin_sink.status = 400
    relay = Relay(config=two_region_config(tmp_path, zipkin_sink, dd_agent.port))
    relays.append(relay)
    eu = [zipkin_span(zone=EU) for _ in range(30)]
    us = [zipkin_span(zone=US) for _ in range(10)]
    for i in range(0, 30, 10):
        assert post_zipkin(relay.url, eu[i:i + 10] + (us if i == 0 else [])).status_code == 202
    assert wait_until(lambda: backend_status(relay, "eu-zipkin")["dropped_spans"] >= 30, timeout=15), \
        backend_status(relay, "eu-zipkin")
    n_requests = len(zipkin_sink.requests)
    time.sleep(2.5)  # several retry periods: a relay looping on the 400 would send again
    assert len(zipkin_sink.requests) == n_requests, "the relay resent a batch the backend refused for good"
    counts = zipkin_sink.counts(delivered=False)
    assert sorted(k[1] for k in counts) == sorted(s["id"] for s in eu) and set(counts.values()) == {1}
    b = backend_status(relay, "eu-zipkin")
    assert b["dropped_spans"] == 30 and b["sent_spans"] == 0 and b["failed_requests"] >= 1, b
    assert b["last_error"] and "400" in b["last_error"], b
    assert not dd_agent.wait_for_ids([s["id"] for s in us]), "the other backend is unaffected"


def test_retryable_answers_are_retried_honouring_retry_after(tmp_path, zipkin_sink, dd_agent, relays):
    zipkin_sink.script.extend([(503, 2), (429, 2)])
    export = dict(FAST_EXPORT, maxBackoff="5s")
    relay = Relay(config=two_region_config(tmp_path, zipkin_sink, dd_agent.port, eu_export=export))
    relays.append(relay)
    eu = [zipkin_span(zone=EU) for _ in range(20)]
    assert post_zipkin(relay.url, eu).status_code == 202
    assert not zipkin_sink.wait_for_ids([s["id"] for s in eu], timeout=20), relay_context(relay)
    reqs = zipkin_sink.requests
    assert [r.status for r in reqs] == [503, 429, 202], [(r.status, len(r.spans)) for r in reqs]
    gaps = [b.received_at - a.answered_at for a, b in zip(reqs, reqs[1:])]
    assert all(g >= 1.8 for g in gaps), f"Retry-After: 2 not honoured, retried after {gaps}"
    assert_once(sink_id_counts(zipkin_sink), [s["id"] for s in eu], "after retries")
    b = backend_status(relay, "eu-zipkin")
    assert (b["sent_spans"], b["dropped_spans"], b["failed_requests"]) == (20, 0, 2), b


# ---------------------------------------------------------------------------------------------
# Export options, the file backend, the embedded default, residency off


@pytest.mark.parametrize("protocol,compression,api_version", [("http1", "gzip", "httpJson"), ("h2c", "zstd", "httpProto")])
def test_zipkin_export_options(tmp_path, zipkin_sink, relays, protocol, compression, api_version):
    cfg = single_backend_config(tmp_path, f"""\
    - name: only
      type: zipkin
      export:
{yaml_map(dict(FAST_EXPORT, protocol=protocol, compression=compression), 8)}
      conf:
        url: {zipkin_sink.url}
        traceId128bit: true
        apiVersion: {api_version}""")
    relay = Relay(config=cfg)
    relays.append(relay)
    spans = [zipkin_span(zone=EU, kind=k) for k in ("SERVER", "CLIENT", "PRODUCER", "CONSUMER")]
    assert post_zipkin(relay.url, spans).status_code == 202
    assert not zipkin_sink.wait_for_ids([s["id"] for s in spans]), relay_context(relay)
    assert zipkin_sink.errors() == []
    for r in zipkin_sink.requests:
        assert r.version == ("h2" if protocol == "h2c" else "HTTP/1.1")
        assert r.headers.get("content-encoding") == compression
        assert r.headers.get("content-type", "").startswith(
            "application/x-protobuf" if api_version == "httpProto" else "application/json")
    got = {s["id"]: s for s in zipkin_sink.delivered_spans()}
    for s in spans:
        assert got[s["id"]] == s


def test_file_backend_writes_zstd_ndjson(tmp_path, relays):
    out_dir = tmp_path / "archive"
    cfg = write(tmp_path, "file.yaml", f"""\
type: Relay
backends:
  - name: archive
    type: file
    export:
{yaml_map(FAST_EXPORT, 6)}
    conf:
      path: {out_dir}
---
type: Mesh
name: default
tracing:
  defaultBackend: archive
""")
    relay = Relay(config=cfg)
    relays.append(relay)
    zspans = [zipkin_span(zone=EU) for _ in range(20)]
    dspans = [dd_span(zone=US) for _ in range(5)]
    assert post_zipkin(relay.url, zspans).status_code == 202
    assert post_datadog(relay.url, [[s] for s in dspans]).status_code == 200

    def lines():
        """Every complete JSON line zstdcat reads from the backend's files (a segment being
        written may end in a partial frame)."""
        out = []
        for f in sorted(p for p in out_dir.rglob("*") if p.is_file()) if out_dir.exists() else []:
            r = subprocess.run(["zstdcat", "-q", str(f)], capture_output=True, timeout=30)
            for line in r.stdout.decode(errors="replace").splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    if not wait_until(lambda: len(lines()) >= 25, timeout=15):
        relay.stop()  # a graceful stop must flush and close the segment
    spans = lines()
    by_id = collections.Counter(s["id"] for s in spans)
    assert_once(by_id, [s["id"] for s in zspans] + [dd_hex(s["span_id"]) for s in dspans], f"file backend {out_dir}")
    got = {s["id"]: s for s in spans}
    for s in zspans:
        assert got[s["id"]] == s  # Zipkin JSON in → the same span out
    for s in dspans:
        g = got[dd_hex(s["span_id"])]
        assert g["traceId"].endswith(dd_hex(s["trace_id"])) and g["timestamp"] == s["start"] // 1000
        assert g["localEndpoint"]["serviceName"] == s["service"] and g["tags"]["kuma.zone"] == US


def test_embedded_default_answers_and_logs_each_batch(relays):
    relay = Relay()
    relays.append(relay)
    span = zipkin_span(region="eu-west-1", service="newcomer")  # a region tag: residency is off here
    r = post_zipkin(relay.url, [span])
    assert r.status_code == 202
    assert post_datadog(relay.url, [[dd_span()]]).status_code == 200
    assert wait_until(lambda: span["traceId"] in relay.output(), timeout=5), \
        "the log backend printed no line for the batch" + relay_context(relay)
    assert sum(relay.status()["routing"]["refused"].values()) == 0


def test_region_tags_without_configured_regions_are_delivered(tmp_path, zipkin_sink, relays):
    cfg = single_backend_config(tmp_path, f"""\
    - name: only
      type: zipkin
      export:
{yaml_map(FAST_EXPORT, 8)}
      conf:
        url: {zipkin_sink.url}
        traceId128bit: true""")
    relay = Relay(config=cfg)
    relays.append(relay)
    spans = ([zipkin_span(region="us-east-1"), zipkin_span(region="eu-west-1"), zipkin_span(region="mars-1"),
              zipkin_span(zone=US), zipkin_span()])
    assert post_zipkin(relay.url, spans).status_code == 202
    assert not zipkin_sink.wait_for_ids([s["id"] for s in spans]), relay_context(relay)
    time.sleep(0.5)
    assert_once(sink_id_counts(zipkin_sink), [s["id"] for s in spans], "residency off")
    routing = relay.status()["routing"]
    assert sum(routing["refused"].values()) == 0 and routing["routed"] == {"only": 5}, routing


def test_embedded_default_binds_zipkin_datadog_and_admin_ports(tmp_path):
    """`tracerelay serve` with no flags: Zipkin 9411, Datadog 8126, admin 9901 (the README's promise)."""
    import socket
    for p in (9411, 8126, 9901):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                pytest.skip(f"port {p} is taken on this machine; the default listeners cannot be checked here")
    proc = subprocess.Popen([os.environ.get("TRACERELAY_BIN", os.path.join(os.path.dirname(__file__), "../../.build/debug/tracerelay")),
                             "serve"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: _ready("http://127.0.0.1:9901/health/ready"), timeout=20)
        assert post_zipkin("http://127.0.0.1:9411", [zipkin_span()]).status_code == 202
        assert post_datadog("http://127.0.0.1:8126", [[dd_span()]]).status_code == 200
        # Admin endpoints live on the admin listener only.
        assert requests.get("http://127.0.0.1:9411/status", timeout=5).status_code == 404
        assert requests.get("http://127.0.0.1:9901/status", timeout=5).json()["ingest"]
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode(errors="replace")
    assert proc.returncode == 0, out
    assert "ready: every listener is accepting" in out


def _ready(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False
