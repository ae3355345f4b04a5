"""Outbound tokens (`conf.auth` of a backend; docs/ingest-auth.md, "Sending a token to a
protected relay") with real relays.

A central tracerelay whose listener requires tokens (`auth: {tokensFile}`) sends to a Zipkin
sink. A regional tracerelay forwards to it through a `tracerelay` backend with
`conf.auth.tokenFile`: its spans arrive. With a wrong token central answers 401, the regional
relay logs and counts it, keeps the spans, and nothing reaches the sink; after a rotation
(central's tokens file and the regional token file changed, both reloaded with SIGHUP) the
held spans and new ones arrive. A Datadog backend sends `DD-Api-Key` (central checks it on its
Datadog endpoint; Datadog's test agent shows the header). No token is ever printed."""
import json
import subprocess
import time

import pytest
import requests

from conftest import Relay, free_port
from sinks import ZipkinSink
from test_ingest_auth import BIN, sighup_and_wait, wait_for_ids
from test_tls_ingest import metric, zipkin_spans

# The tokens of this module by role; none of them may ever be printed.
TOKEN = {"regional": "regional-5d1e8a0c7b3f2946", "rotated": "regional-rotated-0a9b8c7d6e5f4321",
         "wrong": "regional-wrong-1122334455667788", "dd": "ddkey0123456789abcdef0123456789ab"}

CENTRAL = """
type: Relay
listeners: [{{name: ingest, address: "127.0.0.1:{port}", auth: {{tokensFile: "{tokens}"}}}}]
backends:
  - {{name: sink, type: zipkin, export: {{batchDelay: 20ms}}, conf: {{url: "{sink}"}}}}
---
{{type: Mesh, name: default, tracing: {{defaultBackend: sink}}}}
"""

CENTRAL_TOKENS = """
tokens:
  - {{token: "{regional}", name: regional-eu}}
  - {{token: "{dd}", name: dd-relay}}
"""

REGIONAL = """
type: Relay
backends:
  - name: central
    type: tracerelay
    export: {{batchDelay: 20ms, maxBackoff: 300ms}}
    conf: {{url: "http://127.0.0.1:{port}", auth: {{tokenFile: "{token}"}}}}
---
{{type: Mesh, name: default, tracing: {{defaultBackend: central}}}}
"""

DATADOG = """
type: Relay
backends:
  - {{name: central-dd, type: datadog, export: {{batchDelay: 20ms}}, conf: {{address: 127.0.0.1, port: {port}, auth: {{tokenFile: "{token}"}}}}}}
  - {{name: agent, type: datadog, export: {{batchDelay: 20ms}}, conf: {{address: 127.0.0.1, port: {agent}, auth: {{tokenFile: "{token}"}}}}}}
---
{{type: Mesh, name: default, tracing: {{defaultBackend: central-dd}}}}
---
{{type: TrafficTrace, name: to-agent, mesh: default, selectors: [{{match: {{dest: agent}}}}], conf: {{backend: agent}}}}
"""


def post(relay, spans):
    return requests.post(relay.url + "/api/v2/spans", data=json.dumps(spans), headers={"Content-Type": "application/json"}, timeout=10)


def wait(predicate, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="module")
def relays(tmp_path_factory):
    d = tmp_path_factory.mktemp("backend-auth")
    sink = ZipkinSink()
    tokens = d / "tokens.yaml"
    tokens.write_text(CENTRAL_TOKENS.format(regional=TOKEN["regional"], dd=TOKEN["dd"]))
    port = free_port()
    central_cfg = d / "central.yaml"
    central_cfg.write_text(CENTRAL.format(port=port, tokens=tokens, sink=sink.url))
    token_file = d / "central-token"
    token_file.write_text(TOKEN["regional"] + "\n")
    regional_cfg = d / "regional.yaml"
    regional_cfg.write_text(REGIONAL.format(port=port, token=token_file))
    central = Relay(config=str(central_cfg), listen=False, port=port)
    regional = Relay(config=str(regional_cfg))
    ns = type("Relays", (), {})()
    ns.dir, ns.sink, ns.tokens, ns.token_file, ns.port = d, sink, tokens, token_file, port
    ns.central, ns.regional, ns.regional_cfg = central, regional, regional_cfg
    ns.started = [central, regional]
    yield ns
    for r in reversed(ns.started):
        assert r.stop() == 0
    sink.stop()


def ids(spans):
    return {s["id"] for s in spans}


def test_spans_reach_a_protected_central_relay(relays):
    spans = zipkin_spans(6, 100)
    assert post(relays.regional, spans).status_code == 202
    assert wait_for_ids(relays.sink, ids(spans)), relays.regional.tail()
    assert metric(relays.regional.admin_url, "tracerelay_backend_requests_failed_total", backend="central") == 0
    # Without the token, central refuses: the header is what let them through.
    assert post(relays.central, zipkin_spans(1, 190)).status_code == 401


def test_a_wrong_token_is_refused_logged_counted_and_a_rotation_recovers_the_spans(relays):
    refused_before = metric(relays.central.admin_url, "tracerelay_ingest_requests_refused_total", listener="ingest", reason="unauthorized")
    failed_before = metric(relays.regional.admin_url, "tracerelay_backend_requests_failed_total", backend="central")
    relays.token_file.write_text(TOKEN["wrong"] + "\n")
    record = sighup_and_wait(relays.regional)
    assert record["ok"], record
    held = zipkin_spans(5, 200)
    assert post(relays.regional, held).status_code == 202
    assert wait(lambda: metric(relays.central.admin_url, "tracerelay_ingest_requests_refused_total", listener="ingest",
                               reason="unauthorized") > refused_before), relays.central.tail()
    assert wait(lambda: metric(relays.regional.admin_url, "tracerelay_backend_requests_failed_total", backend="central") > failed_before)
    assert wait(lambda: "backend refused our credentials (HTTP 401)" in relays.regional.output()), relays.regional.tail()
    line = next(ln for ln in relays.regional.output().splitlines() if "backend refused our credentials" in ln)
    assert '"backend":"central"' in line.replace(" ", "") and '"status":"401"' in line.replace(" ", ""), line
    status = requests.get(relays.regional.admin_url + "/api/status", timeout=5).json()
    backend = next(b for b in status["backends"] if b["name"] == "central")
    assert "HTTP 401" in (backend.get("last_error") or ""), backend
    assert not ids(held) & ids(relays.sink.delivered_spans()), "a span sent with a wrong token reached the sink"
    assert metric(relays.regional.admin_url, "tracerelay_backend_spans_dropped_total", backend="central", reason="rejected") == 0, \
        "spans refused for credentials are kept, not dropped"

    # Rotation: central accepts the new token (and no longer the old one), the regional relay sends it.
    relays.tokens.write_text(CENTRAL_TOKENS.format(regional=TOKEN["rotated"], dd=TOKEN["dd"]))
    assert sighup_and_wait(relays.central)["ok"]
    relays.token_file.write_text("\n" + TOKEN["rotated"] + "\n")
    record = sighup_and_wait(relays.regional)
    assert record["ok"], record
    fresh = zipkin_spans(3, 210)
    assert post(relays.regional, fresh).status_code == 202
    assert wait_for_ids(relays.sink, ids(held) | ids(fresh), timeout=20), relays.regional.tail()
    old = requests.post(relays.central.url + "/api/v2/spans", data=json.dumps(zipkin_spans(1, 290)),
                        headers={"Content-Type": "application/json", "Authorization": "Bearer " + TOKEN["regional"]}, timeout=10)
    assert old.status_code == 401, "the rotated-out token still works"


def test_datadog_backend_sends_dd_api_key(relays, dd_agent, tmp_path):
    token = tmp_path / "dd-key"
    token.write_text(TOKEN["dd"])
    cfg = tmp_path / "dd.yaml"
    cfg.write_text(DATADOG.format(port=relays.port, agent=dd_agent.port, token=token))
    dd = Relay(config=str(cfg))
    relays.started.append(dd)
    to_central = zipkin_spans(4, 300)
    to_agent = zipkin_spans(2, 400, {"dest": "agent"})
    assert post(dd, to_central + to_agent).status_code == 202
    # Central checks the key on its Datadog endpoint and sends the spans on to the sink.
    assert wait_for_ids(relays.sink, ids(to_central)), dd.tail()
    # The agent shows the header: DD-Api-Key with the bare key (no Bearer scheme, no Authorization).
    assert wait(lambda: dd_agent.trace_requests()), dd.tail()
    for r in dd_agent.trace_requests():
        headers = {k.lower(): v for k, v in r["headers"].items()}
        assert headers.get("dd-api-key") == TOKEN["dd"] and "authorization" not in headers, headers.keys()


def test_check_warns_about_a_token_over_cleartext_and_prints_no_token(relays, tmp_path):
    cfg = tmp_path / "remote.yaml"
    cfg.write_text(REGIONAL.format(port=9411, token=relays.token_file).replace("127.0.0.1", "central.example.com"))
    out = subprocess.run([BIN, "check", "--config", str(cfg)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "sends its token (Authorization from '%s') without TLS to central.example.com" % relays.token_file in out.stdout, out.stdout
    assert "(token from %s)" % relays.token_file in out.stdout, out.stdout  # the backends table names the file
    missing = tmp_path / "missing.yaml"
    missing.write_text(REGIONAL.format(port=9411, token=tmp_path / "no-such-token"))
    out2 = subprocess.run([BIN, "check", "--config", str(missing)], capture_output=True, text=True)
    assert out2.returncode == 1
    assert f"backends[0].conf.auth.tokenFile: cannot read the token file '{tmp_path}/no-such-token'" in out2.stderr, out2.stderr
    for text in [out.stdout, out.stderr, out2.stdout, out2.stderr]:
        assert not any(t in text for t in TOKEN.values()), text


def test_no_token_is_ever_printed(relays):
    # Runs last: every token above was sent, right and wrong.
    for r in relays.started:
        text = r.output() + "".join(requests.get(r.admin_url + p, timeout=5).text for p in ["/status", "/api/status", "/metrics"])
        for t in TOKEN.values():
            assert t not in text, f"a relay printed a token: {t}"
