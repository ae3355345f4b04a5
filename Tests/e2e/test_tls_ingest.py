"""HTTPS ingest with real clients, and identity-pinned residency over mutual TLS.

The relay serves HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with --tls-cert/--tls-key or a listener's
`tls:` section. curl (both protocols), Python's ssl (requests), OpenTelemetry's Zipkin exporter
and ddtrace send to it over https://. On a listener that verifies client certificates, `peers`
maps a certificate identity (Kuma's SPIFFE form) to the zone it speaks for: spans of another
region are refused and counted, and a certificate that matches no rule gets 403."""
import json
import os
import signal
import ssl
import subprocess
import sys
import time

import pytest
import requests

from conftest import Relay, free_port
from sinks import ZipkinSink
from tlscerts import Certs, two_region_routing


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(tmp_path_factory.mktemp("tls"))


def zipkin_spans(n, start=0, tags=None, service="web"):
    return [{"traceId": format(0xabc000 + start + i, "016x"), "id": format(0xdef000 + start + i, "016x"), "name": "get",
             "timestamp": 1700000000000000, "duration": 10, "localEndpoint": {"serviceName": service},
             "tags": dict(tags or {})} for i in range(n)]


def metric(admin_url, name, **labels):
    """The value of one sample of the relay's /metrics (0 when absent)."""
    text = requests.get(admin_url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def https_relay(certs):
    r = Relay(args=["--tls-cert", certs.server_cert, "--tls-key", certs.server_key])
    r.https = f"https://localhost:{r.port}"
    yield r
    assert r.stop() == 0


@pytest.mark.parametrize("flag,version", [("--http1.1", "1.1"), ("--http2", "2")])
def test_curl_over_https(https_relay, certs, flag, version):
    https_relay.clear()
    out = subprocess.run(["curl", "-sS", flag, "--cacert", certs.ca, "-w", "\n%{http_code} %{http_version}",
                          "-H", "Content-Type: application/json", "--data-binary", json.dumps(zipkin_spans(3)),
                          https_relay.https + "/api/v2/spans"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith(f"\n202 {version}"), out.stdout
    assert len(https_relay.wait_for_spans(3)) == 3


def test_python_ssl_client_and_a_wrong_ca(https_relay, certs):
    https_relay.clear()
    r = requests.post(https_relay.https + "/api/v2/spans", data=json.dumps(zipkin_spans(2)), verify=certs.ca,
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 202
    assert len(https_relay.wait_for_spans(2)) == 2
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https_relay.https + "/info", verify=certs.other_ca, timeout=10)


def test_plain_http_to_the_tls_port_is_told_so(https_relay):
    r = requests.post(https_relay.url + "/api/v2/spans", data="[]", timeout=10)
    assert r.status_code == 400
    assert r.json()["error"] == "tls_required"
    assert "this port speaks TLS" in r.json()["message"]


def test_opentelemetry_zipkin_exporter_over_https(https_relay, certs, monkeypatch):
    from opentelemetry.exporter.zipkin.json import ZipkinExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    https_relay.clear()
    # The exporter's requests honour the usual CA bundle variable (as a deployment would set it).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certs.ca)
    session = requests.Session()
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-https"}))
    provider.add_span_processor(SimpleSpanProcessor(ZipkinExporter(endpoint=https_relay.https + "/api/v2/spans", session=session)))
    tracer = provider.get_tracer("e2e")
    with tracer.start_as_current_span("parent"):
        with tracer.start_as_current_span("child"):
            pass
    provider.shutdown()
    spans = https_relay.wait_for_spans(2)
    assert sorted(s["name"] for s in spans) == ["child", "parent"]


def test_ddtrace_over_https(https_relay, certs):
    https_relay.clear()
    env = dict(os.environ, DD_TRACE_AGENT_URL=https_relay.https, SSL_CERT_FILE=certs.ca, DD_TRACE_STARTUP_LOGS="false",
               DD_INSTRUMENTATION_TELEMETRY_ENABLED="false", DD_REMOTE_CONFIGURATION_ENABLED="false")
    code = ("from ddtrace import tracer\n"
            "with tracer.trace('https.op', service='dd-https'):\n"
            "    with tracer.trace('https.child'): pass\n"
            "tracer.shutdown()\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    spans = https_relay.wait_for_spans(2)
    assert sorted(s["name"] for s in spans) == ["https.child", "https.op"], (spans, out.stderr)


# Identity-pinned residency: a central relay whose listener requires client certificates.
PINNED = """
type: Relay
region: eu-west-1
trustUpstreamTags: true
listeners:
  - name: collectors
    address: 127.0.0.1:{port}
    tls:
      certificate: {cert}
      privateKey: {key}
      clientCA: {ca}
peers:
  - match: "spiffe://default/zone-eu-1/*"
    zone: zone-eu-1
  - match: "spiffe://default/zone-us-1/*"
    zone: zone-us-1
zoneRegions:
  zone-eu-1: eu-west-1
  zone-us-1: us-east-1
"""


@pytest.fixture(scope="module")
def pinned(certs, tmp_path_factory):
    eu, us = ZipkinSink(), ZipkinSink()
    port = free_port()
    cfg = tmp_path_factory.mktemp("pinned") / "central.yaml"
    cfg.write_text(PINNED.format(port=port, cert=certs.server_cert, key=certs.server_key, ca=certs.ca)
                   + two_region_routing(eu.url, us.url, "region: us-east-1"))
    check = subprocess.run([os.environ.get("TRACERELAY_BIN", "tracerelay"), "check", "--config", str(cfg)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    r = Relay(config=str(cfg), listen=False, port=port)
    r.https = f"https://localhost:{port}"
    r.eu, r.us, r.check = eu, us, check.stdout
    yield r
    assert r.stop() == 0
    eu.stop()
    us.stop()


def post(relay, certs, client, spans, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(relay.https + "/api/v2/spans", data=json.dumps(spans), headers=h, cert=client, verify=certs.ca, timeout=10)


def test_check_shows_the_identity_mapping(pinned):
    assert "peers (client certificate identity" in pinned.check
    assert "spiffe://default/zone-eu-1/*  zone-eu-1  eu-west-1" in pinned.check
    assert "collectors@127.0.0.1" in pinned.check and "client certificate required" in pinned.check


def test_an_eu_collector_cannot_send_us_spans(pinned, certs):
    eu_client = certs.zone_client("zone-eu-1")
    before = metric(pinned.admin_url, "tracerelay_spans_refused_total", reason="identity")
    # Untagged spans belong to the certificate's zone; spans tagged with the us region — on the
    # span or in X-Tracerelay-Tags — are refused and counted, never sent to the us backend.
    assert post(pinned, certs, eu_client, zipkin_spans(4, 0)).status_code == 202
    assert post(pinned, certs, eu_client, zipkin_spans(3, 100, {"region": "us-east-1"})).status_code == 202
    assert post(pinned, certs, eu_client, zipkin_spans(2, 200),
                headers={"X-Tracerelay-Tags": "kuma.io/zone=zone-us-1"}).status_code == 202
    assert len(pinned.eu.wait_for_spans(4)) == 4
    assert metric(pinned.admin_url, "tracerelay_spans_refused_total", reason="identity", region="us-east-1") - before == 5
    # A us collector's us spans go to the us backend.
    us_client = certs.zone_client("zone-us-1")
    assert post(pinned, certs, us_client, zipkin_spans(2, 300, {"region": "us-east-1"})).status_code == 202
    assert len(pinned.us.wait_for_spans(2)) == 2
    assert len(pinned.eu.delivered_spans()) == 4


def test_unknown_identity_is_refused_with_403(pinned, certs):
    r = post(pinned, certs, certs.zone_client("zone-ap-1"), zipkin_spans(1, 400))
    assert r.status_code == 403
    assert r.json()["error"] == "unknown_peer"
    assert "spiffe://default/zone-ap-1/collector" in r.json()["message"]


@pytest.mark.parametrize("which", ["none", "wrong_ca", "expired"])
def test_clients_without_a_valid_certificate_are_refused(pinned, certs, which):
    client = {"none": None, "wrong_ca": certs.zone_client("zone-eu-1", ca="other-ca"),
              "expired": certs.zone_client("zone-eu-1", days=-1)}[which]
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        post(pinned, certs, client, zipkin_spans(1, 500))


def served_certificate_serial(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    with ctx.wrap_socket(__import__("socket").create_connection(("127.0.0.1", port)), server_hostname="localhost") as s:
        return s.getpeercert()["serialNumber"]


def test_sighup_reloads_the_certificate_without_dropping_connections(certs, tmp_path):
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(open(certs.server_cert, "rb").read())
    key.write_bytes(open(certs.server_key, "rb").read())
    port = free_port()
    cfg = tmp_path / "relay.yaml"
    cfg.write_text(f"type: Relay\nlisteners:\n  - name: https\n    address: 127.0.0.1:{port}\n"
                   f"    tls: {{certificate: {cert}, privateKey: {key}}}\n")
    r = Relay(config=str(cfg), listen=False, port=port)
    try:
        first = served_certificate_serial(port, certs.ca)
        session = requests.Session()  # keeps its connection open across the reload
        assert session.get(f"https://localhost:{port}/info", verify=certs.ca, timeout=10).status_code == 200
        cert.write_bytes(open(certs.server2_cert, "rb").read())
        key.write_bytes(open(certs.server2_key, "rb").read())
        r.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and served_certificate_serial(port, certs.ca) == first:
            time.sleep(0.1)
        assert served_certificate_serial(port, certs.ca) != first
        status = requests.get(r.admin_url + "/api/status", timeout=5).json()
        assert "TLS certificates reloaded for https" in json.dumps(status), status
        assert session.get(f"https://localhost:{port}/info", verify=certs.ca, timeout=10).status_code == 200
        # A broken key is refused; the running certificate stays.
        key.write_text("not a key")
        r.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert served_certificate_serial(port, certs.ca) != first
        assert r.proc.poll() is None
    finally:
        assert r.stop() == 0
