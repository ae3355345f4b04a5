"""Ingest tokens (docs/ingest-auth.md) with real clients.

A listener with `auth: {tokensFile: …}` takes span-carrying requests only with one of the file's
tokens: `Authorization: Bearer <token>`, or Datadog's `DD-Api-Key: <token>` on the Datadog
endpoints. curl without, with a wrong and with the right token; OpenTelemetry's Zipkin exporter
with a session that carries the header; Datadog clients; a zone's token refused for another
region's spans (counted as reason="identity"); the tokens file replaced and SIGHUP; and no token
ever printed by the relay or by `tracerelay check`."""
import hashlib
import json
import os
import signal
import subprocess
import time

import msgpack
import pytest
import requests

import clients
from conftest import Relay, free_port
from sinks import ZipkinSink
from test_tls_ingest import metric, zipkin_spans

BIN = os.environ.get("TRACERELAY_BIN", "tracerelay")
EU_TOKEN = "eu-3b1f0c6a9e2d4857"
US_TOKEN = "us-9a8b7c6d5e4f3021"
OPS_TOKEN = "ops-1029384756abcdef"
NEW_TOKEN = "ops-new-fedcba6543210987"
EVERY_TOKEN = [EU_TOKEN, US_TOKEN, OPS_TOKEN, NEW_TOKEN]

CONFIG = """
type: Relay
region: eu-west-1
trustUpstreamTags: true
listeners: [{{name: collectors, address: "127.0.0.1:{port}", auth: {{tokensFile: "{tokens}"}}}}]
zoneRegions: {{zone-eu-1: eu-west-1, zone-us-1: us-east-1}}
backends:
  - {{name: eu, type: zipkin, region: eu-west-1, export: {{batchDelay: 20ms}}, conf: {{url: "{eu}"}}}}
  - {{name: us, type: zipkin, region: us-east-1, export: {{batchDelay: 20ms}}, conf: {{url: "{us}"}}}}
---
{{type: Mesh, name: default, tracing: {{defaultBackend: eu}}}}
---
{{type: TrafficTrace, name: us-traffic, mesh: default, selectors: [{{match: {{region: us-east-1}}}}], conf: {{backend: us}}}}
"""

TOKENS = f"""
tokens:
  - token: "{EU_TOKEN}"
    name: collector-eu-1
    zone: zone-eu-1
    tags: {{team: payments}}
  - tokenSha256: {hashlib.sha256(US_TOKEN.encode()).hexdigest()}
    name: collector-us-1
    zone: zone-us-1
  - token: "{OPS_TOKEN}"
    name: ops
"""


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def protected(tmp_path_factory):
    eu, us = ZipkinSink(), ZipkinSink()
    d = tmp_path_factory.mktemp("auth")
    tokens = d / "tokens.yaml"
    tokens.write_text(TOKENS)
    port = free_port()
    cfg = d / "relay.yaml"
    cfg.write_text(CONFIG.format(port=port, tokens=tokens, eu=eu.url, us=us.url))
    check = subprocess.run([BIN, "check", "--config", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    r = Relay(config=str(cfg), listen=False, port=port)
    r.eu, r.us, r.check, r.tokens = eu, us, check.stdout, tokens
    yield r
    assert r.stop() == 0
    eu.stop()
    us.stop()


def post(relay, spans, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(relay.url + "/api/v2/spans", data=json.dumps(spans), headers=h, timeout=10)


def test_check_prints_names_and_zones_never_tokens(protected):
    assert "collectors@127.0.0.1" in protected.check and "(token required)" in protected.check
    assert "ingest tokens of listener collectors" in protected.check
    assert "collector-eu-1  zone-eu-1  eu-west-1  team=payments" in protected.check
    assert "collector-us-1  zone-us-1  us-east-1" in protected.check
    assert "ops             -          any" in protected.check
    assert not any(t in protected.check for t in EVERY_TOKEN)
    assert hashlib.sha256(US_TOKEN.encode()).hexdigest() not in protected.check


def test_check_names_the_field_of_a_broken_tokens_file(tmp_path):
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"type: Relay\nlisteners:\n  - name: in\n    address: 127.0.0.1:{free_port()}\n"
                   f"    auth: {{tokensFile: {tmp_path}/missing.yaml}}\n")
    out = subprocess.run([BIN, "check", "--config", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"listeners[0].auth.tokensFile: {tmp_path}/missing.yaml: cannot read the tokens file: No such file or directory" in out.stderr
    (tmp_path / "missing.yaml").write_text(f"tokens:\n  - token: {OPS_TOKEN}\n    zone: zone-nowhere\n")
    out = subprocess.run([BIN, "check", "--config", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "tokens[0].zone: zone 'zone-nowhere' is not in zoneRegions" in out.stderr
    assert OPS_TOKEN not in out.stderr + out.stdout


@pytest.mark.parametrize("header,challenge", [
    (None, 'Bearer realm="tracerelay"'),
    ("Authorization: Bearer wrong-token-123", 'Bearer realm="tracerelay", error="invalid_token"'),
    ("Authorization: Basic b3BzOnNlY3JldA==", 'Bearer realm="tracerelay"'),
    (f"DD-Api-Key: {OPS_TOKEN}", 'Bearer realm="tracerelay"'),  # Datadog's header counts on Datadog endpoints only
])
def test_curl_without_or_with_a_wrong_token_gets_401(protected, header, challenge):
    before = metric(protected.admin_url, "tracerelay_ingest_requests_refused_total", listener="collectors",
                    format="zipkin_v2_json", reason="unauthorized")
    args = ["curl", "-sS", "-D", "-", "-H", "Content-Type: application/json", "--data-binary", json.dumps(zipkin_spans(1))]
    if header:
        args += ["-H", header]
    out = subprocess.run(args + [protected.url + "/api/v2/spans"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.partition("\n\n")  # text mode turned CRLF into LF
    assert head.startswith("HTTP/1.1 401"), out.stdout
    assert f"www-authenticate: {challenge}".lower() in head.lower(), head
    reason = json.loads(body)
    assert reason["error"] == "unauthorized"
    assert "Authorization: Bearer <token>" in reason["message"] or "not valid" in reason["message"], reason
    assert "wrong-token-123" not in body
    assert metric(protected.admin_url, "tracerelay_ingest_requests_refused_total", listener="collectors",
                  format="zipkin_v2_json", reason="unauthorized") == before + 1


def test_curl_with_the_token_is_accepted(protected):
    protected.clear()
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
                          "-H", f"Authorization: Bearer {OPS_TOKEN}", "--data-binary", json.dumps(zipkin_spans(2, 10)),
                          protected.url + "/api/v2/spans"], capture_output=True, text=True, timeout=20)
    assert out.stdout == "202", out.stderr
    assert len(protected.wait_for_spans(2)) == 2


def test_opentelemetry_zipkin_exporter_with_a_session_carrying_the_token(protected):
    from opentelemetry.exporter.zipkin.json import ZipkinExporter

    protected.clear()
    session = requests.Session()
    session.headers.update(bearer(OPS_TOKEN))
    sent = clients.otel_emit(ZipkinExporter(endpoint=protected.url + "/api/v2/spans", session=session), "zone-eu-1")
    assert sorted(s["name"] for s in protected.wait_for_spans(len(sent))) == sorted(s.name for s in sent)


def test_ddtrace_does_not_send_its_api_key_to_an_agent(protected, monkeypatch):
    """ddtrace sends `DD_API_KEY` only to Datadog's own intake (agentless mode), never to an agent
    URL: its traces to a token-protected listener are refused (401, counted). A tracer reaches such
    a listener through a collector or agent in front of it, or a client that sets the header."""
    protected.clear()
    refused = dict(listener="collectors", reason="unauthorized")
    before = sum(metric(protected.admin_url, "tracerelay_ingest_requests_refused_total", format=f, **refused)
                 for f in ("datadog_v04", "datadog_v05"))
    monkeypatch.setenv("DD_API_KEY", OPS_TOKEN)  # the real ddtrace, in its own process, with the key set
    clients.ddtrace_emit(protected.url)
    deadline = time.time() + 10
    after = before
    while time.time() < deadline and after == before:
        after = sum(metric(protected.admin_url, "tracerelay_ingest_requests_refused_total", format=f, **refused)
                    for f in ("datadog_v04", "datadog_v05"))
        time.sleep(0.05)
    assert after > before, "ddtrace's request was not refused: does it send DD-Api-Key to agents now?"
    assert protected.captured_spans()[0] == []


def test_datadog_clients_with_dd_api_key(protected):
    protected.clear()
    span = {"trace_id": 77, "span_id": 78, "parent_id": 0, "name": "dd.op", "service": "dd-auth", "resource": "r",
            "type": "web", "start": 1700000000000000000, "duration": 1000, "error": 0, "meta": {}, "metrics": {}}
    h = {"Content-Type": "application/msgpack", "X-Datadog-Trace-Count": "1"}
    r = requests.put(protected.url + "/v0.4/traces", data=msgpack.packb([[span]]), headers={**h, "DD-Api-Key": OPS_TOKEN}, timeout=10)
    assert r.status_code == 200, r.text
    assert "rate_by_service" in r.json()
    assert [s["name"] for s in protected.wait_for_spans(1)] == ["dd.op"]
    r = requests.put(protected.url + "/v0.4/traces", data=msgpack.packb([[span]]), headers={**h, "DD-Api-Key": "wrong"}, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    # /info stays open (tracers ask it before sending anything, and the agent's needs no key).
    assert requests.get(protected.url + "/info", timeout=5).status_code == 200
    # Client-computed stats are forwarded to a backend: they need the token too.
    assert requests.put(protected.url + "/v0.6/stats", data=b"\x80", headers={"Content-Type": "application/msgpack"}, timeout=5).status_code == 401
    assert requests.put(protected.url + "/v0.6/stats", data=b"\x80", headers={"Content-Type": "application/msgpack", "DD-Api-Key": OPS_TOKEN},
                        timeout=5).status_code == 200


def ids(sink):
    return {s["id"] for s in sink.delivered_spans()}


def wait_for_ids(sink, wanted, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline and not wanted <= ids(sink):
        time.sleep(0.05)
    return wanted <= ids(sink)


def test_a_zone_token_cannot_send_another_regions_spans(protected):
    before = metric(protected.admin_url, "tracerelay_spans_refused_total", reason="identity", region="us-east-1")
    # Untagged spans belong to the token's zone; spans of the us region (their own tag, or the
    # upstream header) are refused and counted, never sent to the us backend.
    eu_spans = zipkin_spans(4, 100)
    refused = zipkin_spans(3, 200, {"region": "us-east-1"}) + zipkin_spans(2, 300)
    assert post(protected, eu_spans, bearer(EU_TOKEN)).status_code == 202
    assert post(protected, refused[:3], bearer(EU_TOKEN)).status_code == 202
    assert post(protected, refused[3:], {**bearer(EU_TOKEN), "X-Tracerelay-Tags": "kuma.io/zone=zone-us-1"}).status_code == 202
    assert wait_for_ids(protected.eu, {s["id"] for s in eu_spans})
    deadline = time.time() + 10
    while time.time() < deadline and metric(protected.admin_url, "tracerelay_spans_refused_total", reason="identity", region="us-east-1") < before + 5:
        time.sleep(0.05)
    assert metric(protected.admin_url, "tracerelay_spans_refused_total", reason="identity", region="us-east-1") == before + 5
    # The us token (the file holds only its SHA-256) sends us spans to the us backend.
    us_spans = zipkin_spans(2, 400, {"region": "us-east-1"})
    assert post(protected, us_spans, bearer(US_TOKEN)).status_code == 202
    assert wait_for_ids(protected.us, {s["id"] for s in us_spans})
    refused_ids = {s["id"] for s in refused}
    assert not refused_ids & (ids(protected.eu) | ids(protected.us)), "a refused span was delivered"


def last_reload(relay):
    return requests.get(relay.admin_url + "/api/status", timeout=5).json().get("last_reload")


def sighup_and_wait(relay):
    before = last_reload(relay)
    relay.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and last_reload(relay) == before:
        time.sleep(0.05)
    record = last_reload(relay)
    assert record != before, "no reload happened"
    return record


def test_replaced_tokens_file_and_sighup(protected):
    original = protected.tokens.read_text()
    try:
        # A new file renamed over the old one, as config management does.
        fresh = protected.tokens.with_suffix(".new")
        fresh.write_text(original.replace(OPS_TOKEN, NEW_TOKEN))
        os.replace(fresh, protected.tokens)
        record = sighup_and_wait(protected)
        assert record["ok"], record
        assert post(protected, zipkin_spans(1, 500), bearer(OPS_TOKEN)).status_code == 401
        assert post(protected, zipkin_spans(1, 501), bearer(NEW_TOKEN)).status_code == 202
        # A broken file: the reload is refused and the running tokens stay.
        protected.tokens.write_text("tokens:\n  - name: no-token-here\n")
        record = sighup_and_wait(protected)
        assert not record["ok"] and "listeners[0].auth.tokensFile" in record["message"], record
        assert post(protected, zipkin_spans(1, 502), bearer(NEW_TOKEN)).status_code == 202
    finally:
        protected.tokens.write_text(original)
        sighup_and_wait(protected)
    assert post(protected, zipkin_spans(1, 503), bearer(OPS_TOKEN)).status_code == 202


def test_no_token_is_ever_logged(protected):
    # Runs last in this module: every token above was sent, right and wrong.
    out = protected.output()
    assert "unauthorized" in out, "refusals are logged"
    for t in EVERY_TOKEN + ["wrong-token-123"]:
        assert t not in out, f"the relay printed a token: {t}"
