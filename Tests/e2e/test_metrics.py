"""`GET /metrics` end to end (issue 12): a relay with two Zipkin backends pinned to regions, a
known load from a real HTTP client, and the exposition read with Prometheus's own parser
(prometheus_client). Every counter must equal what the sinks received and what the client
was answered; every metric family must carry HELP and TYPE.

The load is random but seeded (E2E_SEED, default: a fresh seed printed in every assertion)."""
import os
import random
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from clients import post_zipkin, zipkin_span
from conftest import Relay
from sinks import ZipkinSink

EU_ZONE, US_ZONE = "eu-west-zone-1", "us-east-zone-1"
SEED = int(os.environ.get("E2E_SEED", random.randrange(1 << 32)))


def two_sink_config(tmp_path, eu, us):
    """eu zones → eu-zipkin (region eu-west-1), us zones → us-zipkin (us-east-1); spans with no
    zone go to the Mesh default eu-zipkin, so a span tagged region=us-east-1 without a zone is
    refused for residency (us-east-1 has no fallback)."""
    export = "{batchDelay: 50ms, maxBackoff: 300ms, downAfter: 2, timeout: 5s}"
    path = tmp_path / "metrics.yaml"
    path.write_text(f"""\
type: Relay
region: eu-west-1
zoneRegions:
  {EU_ZONE}: eu-west-1
  {US_ZONE}: us-east-1
---
type: Mesh
name: default
tracing:
  defaultBackend: eu-zipkin
  backends:
    - name: eu-zipkin
      type: zipkin
      region: eu-west-1
      export: {export}
      conf: {{url: '{eu.url}', traceId128bit: true}}
    - name: us-zipkin
      type: zipkin
      region: us-east-1
      export: {export}
      conf: {{url: '{us.url}', traceId128bit: true}}
---
type: TrafficTrace
name: us-traffic
mesh: default
selectors:
  - match: {{kuma.io/service: '*', kuma.io/zone: {US_ZONE}}}
conf: {{backend: us-zipkin}}
---
type: TrafficTrace
name: eu-traffic
mesh: default
selectors:
  - match: {{kuma.io/service: '*', kuma.io/zone: {EU_ZONE}}}
conf: {{backend: eu-zipkin}}
""")
    return str(path)


class Scrape:
    """One scrape parsed by prometheus_client: families by name, samples by (name, labels)."""

    def __init__(self, relay):
        r = requests.get(relay.admin_url + "/metrics", timeout=5)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        self.text = r.text
        self.families = {f.name: f for f in text_string_to_metric_families(r.text)}
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())), 0)


def wait_until(predicate, timeout=30, interval=0.1):
    deadline = time.time() + timeout
    while True:
        v = predicate()
        if v or time.time() > deadline:
            return v
        time.sleep(interval)


@pytest.fixture
def sinks():
    eu, us = ZipkinSink(), ZipkinSink()
    yield eu, us
    eu.stop()
    us.stop()


@pytest.fixture
def relay(tmp_path, sinks):
    r = Relay(config=two_sink_config(tmp_path, *sinks))
    yield r
    assert r.stop() == 0


def ingest_listener(relay):
    return next(l["name"] for l in requests.get(relay.admin_url + "/api/status", timeout=5).json()["listeners"] if l["kind"] == "ingest")


def test_counters_equal_what_the_sinks_received(relay, sinks):
    eu, us = sinks
    rng = random.Random(SEED)
    why = f"seed {SEED}"
    want = {"eu": 0, "us": 0, "residency": 0}
    sent_spans = sent_bytes = 0
    requests_ok = rng.randrange(8, 20)
    for _ in range(requests_ok):
        spans = []
        for _ in range(rng.randrange(1, 40)):
            kind = rng.choice(["eu", "eu", "us", "residency"])
            want[kind] += 1
            spans.append(zipkin_span(zone=EU_ZONE if kind == "eu" else US_ZONE if kind == "us" else None,
                                     region="us-east-1" if kind == "residency" else None))
        r = post_zipkin(relay.url, spans)
        assert r.status_code == 202, (r.text, why)
        sent_spans += len(spans)
        sent_bytes += len(r.request.body)
    assert requests.post(relay.url + "/api/v2/spans", data=b'[{"traceId":', headers={"Content-Type": "application/json"}).status_code == 400
    assert requests.post(relay.url + "/api/v2/spans", data=b"<x/>", headers={"Content-Type": "text/xml"}).status_code == 415

    assert len(eu.wait_for_spans(want["eu"])) == want["eu"], why
    assert len(us.wait_for_spans(want["us"])) == want["us"], why
    # The exporter counts a batch once the sink's answer is read: wait for that, not for the sink.
    assert wait_until(lambda: Scrape(relay).value("tracerelay_backend_spans_sent_total", backend="us-zipkin") == want["us"]
                      and Scrape(relay).value("tracerelay_backend_spans_sent_total", backend="eu-zipkin") == want["eu"]), why

    m = Scrape(relay)
    listener = ingest_listener(relay)
    fmt = dict(listener=listener, format="zipkin_v2_json")
    assert m.value("tracerelay_ingest_spans_received_total", **fmt) == sent_spans, why
    assert m.value("tracerelay_ingest_bytes_received_total", **fmt) == sent_bytes, why
    assert m.value("tracerelay_ingest_requests_total", **fmt) == requests_ok + 1, why
    assert m.value("tracerelay_ingest_requests_refused_total", reason="parse", **fmt) == 1
    assert m.value("tracerelay_ingest_requests_refused_total", listener=listener, format="unknown", reason="unsupported") == 1
    assert m.value("tracerelay_http_responses_total", listener=listener, code="202") == requests_ok, why
    assert m.value("tracerelay_http_responses_total", listener=listener, code="400") == 1
    assert m.value("tracerelay_http_responses_total", listener=listener, code="415") == 1
    assert m.value("tracerelay_ingest_request_duration_seconds_count", listener=listener) == requests_ok + 2, why

    assert eu.counts() and max(eu.counts().values()) == 1 and max(us.counts().values()) == 1, "no duplicates"
    for name, sink in (("eu-zipkin", eu), ("us-zipkin", us)):
        delivered = sink.delivered_spans()
        ok = [r for r in sink.requests if r.delivered]
        assert m.value("tracerelay_spans_routed_total", backend=name) == len(delivered), (name, why)
        assert m.value("tracerelay_backend_spans_sent_total", backend=name) == len(delivered), (name, why)
        assert m.value("tracerelay_backend_requests_sent_total", backend=name) == len(ok), (name, why)
        assert m.value("tracerelay_backend_bytes_sent_total", backend=name) == sum(len(r.body) for r in ok), (name, why)
        assert m.value("tracerelay_backend_export_duration_seconds_count", backend=name) == len(ok), (name, why)
        assert m.value("tracerelay_backend_up", backend=name) == 1
        assert m.value("tracerelay_backend_spans_retried_total", backend=name) == 0
        assert m.value("tracerelay_queue_records", backend=name) == 0
    assert m.value("tracerelay_spans_refused_total", reason="residency", region="us-east-1", backend="eu-zipkin") == want["residency"], why
    assert m.value("tracerelay_build_info", version=requests.get(relay.admin_url + "/api/status").json()["version"]) == 1
    assert m.value("tracerelay_http_open_connections") >= 1

    # Every family has HELP and TYPE (the parser says "unknown" for a family without TYPE) and
    # follows the naming conventions.
    assert len(m.families) >= 25, sorted(m.families)
    for f in m.families.values():
        assert f.type in ("counter", "gauge", "histogram"), (f.name, f.type)
        assert f.documentation, f"{f.name} has no HELP"
        assert f.name.startswith("tracerelay_"), f.name
        assert f.samples, f.name
    for line in m.text.splitlines():
        if line.startswith("# TYPE ") and line.endswith(" counter"):
            assert line.split()[2].endswith("_total"), line
    for family in ("tracerelay_ingest_request_duration_seconds", "tracerelay_backend_export_duration_seconds"):
        assert m.families[family].type == "histogram"
        assert any(s.name.endswith("_bucket") and s.labels.get("le") == "+Inf" for s in m.families[family].samples)
    for family in ("tracerelay_queue_bytes", "tracerelay_queue_spill_segments", "tracerelay_queue_oldest_record_age_seconds",
                   "tracerelay_backend_spans_dropped_total", "tracerelay_uptime_seconds"):
        assert family.removesuffix("_total") in m.families, family


def test_a_backend_going_down_and_back_shows_in_the_metrics(relay, sinks):
    eu, us = sinks
    us.stop()
    spans = [zipkin_span(zone=US_ZONE) for _ in range(30)]
    assert post_zipkin(relay.url, spans).status_code == 202
    down = wait_until(lambda: Scrape(relay).value("tracerelay_backend_up", backend="us-zipkin") == 0)
    m = Scrape(relay)
    assert down, m.text
    assert m.value("tracerelay_backend_up", backend="eu-zipkin") == 1, "one backend down does not mark the other"
    assert m.value("tracerelay_backend_requests_failed_total", backend="us-zipkin") >= 2
    assert m.value("tracerelay_backend_spans_retried_total", backend="us-zipkin") >= 60, "30 spans retried at least twice"
    assert m.value("tracerelay_queue_records", backend="us-zipkin") >= 1
    status = requests.get(relay.admin_url + "/api/status").json()
    us_status = next(b for b in status["backends"] if b["name"] == "us-zipkin")
    assert us_status["up"] is False and us_status["last_error"], us_status
    assert any(p.startswith("backend us-zipkin is down") for p in status["problems"]), status["problems"]

    us.start()
    assert len(us.wait_for_spans(30, timeout=30)) == 30
    assert wait_until(lambda: Scrape(relay).value("tracerelay_backend_up", backend="us-zipkin") == 1)
    assert wait_until(lambda: Scrape(relay).value("tracerelay_backend_spans_sent_total", backend="us-zipkin") == 30)
    assert Scrape(relay).value("tracerelay_queue_records", backend="us-zipkin") == 0
